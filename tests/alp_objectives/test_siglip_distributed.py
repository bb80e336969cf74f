"""Gloo processes: the ring-chunked (and gathered) SigLIP equals the single-process loss.

Both modes also run uneven batches (2 + 4 + 3 rows) and batches with an empty rank (4 + 0 + 5):
the mean of the rank losses is the one-big-batch loss there too, and DDP's gradient average
the one-big-batch gradient.

Three ranks rather than two, so that the ring's direction matters (with two, the left and the
right neighbour are one rank and a reversed ring would pass unnoticed).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alp_objectives.configs import SigLIPConfig
from alp_objectives.siglip import SigLIPLoss

pytestmark = pytest.mark.distributed  # gloo processes (run alone: -m distributed)

WORLD, PER_RANK, DIM = 3, 3, 5
UNEVEN = {"uneven": (2, 4, 3), "empty": (4, 0, 5)}  # rows per rank; rank 1 empty in "empty"
CONFIG = {"init_logit_scale": 3.0, "init_logit_bias": -1.0}


def _data():
    g = torch.Generator().manual_seed(11)
    a = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    ids = torch.tensor([4, 8, 4, 1, 8, 2, 5, 1, 4])  # clips 1, 4 and 8 span several ranks
    return a, t, ids


def _rows(rank: int, sizes: tuple[int, ...]) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _run(loss_fn, a, t, ids, rows):
    la, lt = a[rows].clone().requires_grad_(), t[rows].clone().requires_grad_()
    res = loss_fn(la, lt, None if ids is None else ids[rows])
    res.loss.backward()
    return {"loss": res.loss.item(), "audio": la.grad.clone(), "text": lt.grad.clone(),
            "pair_acc": res.metrics["pair_acc"], "pos_prob": res.metrics["pos_prob"],
            "scale": loss_fn.log_logit_scale.grad.item(),
            "bias": loss_fn.logit_bias.grad.item(),
            "blocks": list(loss_fn.block_shapes)}


def _worker(rank: int, port: int, out: dict) -> None:
    a, t, ids = _data()
    even = (PER_RANK,) * WORLD
    for mode in ("chunked", "gather", "local"):
        for use_ids in (False, True):
            loss_fn = SigLIPLoss(SigLIPConfig(distributed=mode, **CONFIG)).double()
            out[(mode, use_ids, rank)] = _run(
                loss_fn, a, t, ids if use_ids else None, _rows(rank, even))
    for case, sizes in UNEVEN.items():
        for mode in ("chunked", "gather"):
            for use_ids in (False, True):
                loss_fn = SigLIPLoss(SigLIPConfig(distributed=mode, **CONFIG)).double()
                out[(case, mode, use_ids, rank)] = _run(
                    loss_fn, a, t, ids if use_ids else None, _rows(rank, sizes))


@pytest.fixture(scope="module")
def rank_results(spawn_ranks):
    return spawn_ranks(_worker, WORLD)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chunked", "gather"])
@pytest.mark.parametrize("use_ids", [False, True])
def test_ranks_loss_and_grads_equal_single_process(rank_results, mode, use_ids):
    out = {r: rank_results[(mode, use_ids, r)] for r in range(WORLD)}

    a, t, ids = _data()
    a.requires_grad_()
    t.requires_grad_()
    loss_fn = SigLIPLoss(SigLIPConfig(**CONFIG)).double()
    single = loss_fn(a, t, ids if use_ids else None)
    single.loss.backward()
    # rank r's loss is S_r / PER_RANK (S_r: its rows' sum over all texts) and the single-process
    # loss is sum_r S_r / (WORLD * PER_RANK), so the mean of the rank losses is the global loss
    mean_loss = sum(out[r]["loss"] for r in range(WORLD)) / WORLD
    assert mean_loss == pytest.approx(single.loss.item(), rel=1e-12)
    for r in range(WORLD):
        rows = slice(r * PER_RANK, (r + 1) * PER_RANK)
        # the ring (or gather) backward brings every rank's loss gradient to the owner of the
        # rows, so each rank holds d(sum_s loss_s) = WORLD * d(global loss) for its rows
        torch.testing.assert_close(out[r]["audio"], WORLD * a.grad[rows])
        torch.testing.assert_close(out[r]["text"], WORLD * t.grad[rows])
    # scale and bias are replicated: rank r's grad is d(loss_r) only, so the per-rank grads sum
    # to WORLD * the single-process grad (DDP's all-reduce mean gives exactly that grad)
    for name, param in (("scale", loss_fn.log_logit_scale), ("bias", loss_fn.logit_bias)):
        total = sum(out[r][name] for r in range(WORLD))
        assert total == pytest.approx(WORLD * param.grad.item(), rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("use_ids", [False, True])
def test_chunked_never_builds_more_than_a_local_block(rank_results, use_ids):
    for r in range(WORLD):
        assert rank_results[("chunked", use_ids, r)]["blocks"] == [(PER_RANK, PER_RANK)] * WORLD
        assert rank_results[("gather", use_ids, r)]["blocks"] == [(PER_RANK, WORLD * PER_RANK)]
        for case, sizes in UNEVEN.items():
            assert rank_results[(case, "chunked", use_ids, r)]["blocks"] == [
                (sizes[r], sizes[(r - k) % WORLD]) for k in range(WORLD)]
            # uneven gather: still local rows x global columns
            assert rank_results[(case, "gather", use_ids, r)]["blocks"] == [
                (sizes[r], sum(sizes))]


@pytest.mark.slow
@pytest.mark.parametrize("use_ids", [False, True])
@pytest.mark.parametrize("mode", ["chunked", "gather"])
@pytest.mark.parametrize("case", list(UNEVEN))
def test_uneven_batches_give_the_one_big_batch_loss_and_gradients(rank_results, case, mode,
                                                                  use_ids):
    """Rank r's loss is S_r / (N / W) (S_r: its rows' sum over all texts), so the mean over
    the ranks (what DDP's gradient average takes) is the single-process loss over all N rows,
    and every gradient is W times the single-process one, as with even batches. (It was
    S_r / B_r: the rows of the rank with fewer were weighted up, by 2x for 2 + 4 rows.)"""
    sizes = UNEVEN[case]
    out = {r: rank_results[(case, mode, use_ids, r)] for r in range(WORLD)}
    a, t, ids = _data()
    a.requires_grad_()
    t.requires_grad_()
    loss_fn = SigLIPLoss(SigLIPConfig(**CONFIG)).double()
    single = loss_fn(a, t, ids if use_ids else None)
    single.loss.backward()
    mean_loss = sum(out[r]["loss"] for r in range(WORLD)) / WORLD
    assert mean_loss == pytest.approx(single.loss.item(), rel=1e-10)
    for r in range(WORLD):  # the whole batch's metrics on every rank (and so their mean)
        for key in ("pair_acc", "pos_prob"):
            assert out[r][key] == pytest.approx(single.metrics[key], rel=1e-12), (r, key)
    for r in range(WORLD):
        rows = _rows(r, sizes)
        torch.testing.assert_close(out[r]["audio"], WORLD * a.grad[rows], rtol=1e-10,
                                   atol=1e-12)
        torch.testing.assert_close(out[r]["text"], WORLD * t.grad[rows], rtol=1e-10,
                                   atol=1e-12)
    for name, param in (("scale", loss_fn.log_logit_scale), ("bias", loss_fn.logit_bias)):
        total = sum(out[r][name] for r in range(WORLD))  # DDP's mean: total / WORLD
        assert total / WORLD == pytest.approx(param.grad.item(), rel=1e-10)


@pytest.mark.slow
def test_local_mode_scores_only_the_own_batch(rank_results):
    a, t, ids = _data()
    for r in range(WORLD):
        rows = slice(r * PER_RANK, (r + 1) * PER_RANK)
        alone = SigLIPLoss(SigLIPConfig(**CONFIG)).double()(a[rows], t[rows], ids[rows])
        assert rank_results[("local", True, r)]["loss"] == pytest.approx(alone.loss.item())
        assert rank_results[("local", True, r)]["blocks"] == [(PER_RANK, PER_RANK)]
