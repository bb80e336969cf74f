"""Two gloo processes: the local-rows-vs-global-batch InfoNCE equals the single-process loss.

Besides equal batches, the ranks run uneven ones (2 + 4 and 4 + 2 rows: with 4 + 2 the old
fallback ids ``arange(B) + rank * B`` collided across ranks) and an empty rank (0 + 6); there
too the mean of the rank losses is the one-big-batch loss and DDP's gradient average the
one-big-batch gradient.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alp_objectives import InfoNCEConfig, InfoNCELoss

pytestmark = pytest.mark.distributed  # gloo processes (run alone: -m distributed)

WORLD, PER_RANK, DIM = 2, 3, 5
UNEVEN = {"2+4": (2, 4), "4+2": (4, 2), "0+6": (0, 6)}  # rows per rank, WORLD * PER_RANK in all
REG = 0.2


def _data():
    g = torch.Generator().manual_seed(11)
    a = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    ids = torch.tensor([4, 8, 4, 1, 8, 2])  # clips 4 and 8 have captions on both ranks
    return a, t, ids


def _rows(rank: int, sizes: tuple[int, ...]) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def _worker(rank: int, port: int, out: dict) -> None:
    a, t, ids = _data()
    rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    for use_ids in (False, True):
        la, lt = a[rows].clone().requires_grad_(), t[rows].clone().requires_grad_()
        loss_fn = InfoNCELoss(InfoNCEConfig(embedding_regularizer=0.2)).double()
        res = loss_fn(la, lt, ids[rows] if use_ids else None)
        res.loss.backward()
        out[(rank, use_ids)] = (res.loss.item(), la.grad.clone(), lt.grad.clone())
    for name, sizes in UNEVEN.items():
        rows = _rows(rank, sizes)
        for use_ids in (False, True):
            la, lt = a[rows].clone().requires_grad_(), t[rows].clone().requires_grad_()
            loss_fn = InfoNCELoss(InfoNCEConfig(embedding_regularizer=REG)).double()
            res = loss_fn(la, lt, ids[rows] if use_ids else None)
            res.loss.backward()
            out[(name, rank, use_ids)] = (res.loss.item(), la.grad.clone(), lt.grad.clone())
    try:  # every rank empty: one clear error on every rank, no rank left waiting
        InfoNCELoss().double()(a[:0], t[:0])
    except ValueError as err:
        out[("all_empty_error", rank)] = str(err)


@pytest.fixture(scope="module")
def two_rank_results(spawn_ranks):
    return spawn_ranks(_worker, WORLD)


@pytest.mark.slow
@pytest.mark.parametrize("use_ids", [False, True])
def test_two_process_loss_and_grads_equal_single_process(two_rank_results, use_ids):
    out = {r: two_rank_results[(r, use_ids)] for r in range(WORLD)}

    a, t, ids = _data()
    a.requires_grad_()
    t.requires_grad_()
    single = InfoNCELoss(InfoNCEConfig(embedding_regularizer=0.2)).double()(
        a, t, ids if use_ids else None)
    single.loss.backward()
    mean_loss = sum(out[r][0] for r in range(WORLD)) / WORLD
    assert mean_loss == pytest.approx(single.loss.item(), rel=1e-12)
    for r in range(WORLD):
        rows = slice(r * PER_RANK, (r + 1) * PER_RANK)
        # each rank's loss is the mean over its rows; their mean is the global loss
        torch.testing.assert_close(out[r][1], WORLD * a.grad[rows])
        torch.testing.assert_close(out[r][2], WORLD * t.grad[rows])


@pytest.mark.slow
@pytest.mark.parametrize("use_ids", [False, True])
@pytest.mark.parametrize("case", list(UNEVEN))
def test_uneven_batches_give_the_one_big_batch_loss_and_gradients(two_rank_results, case,
                                                                  use_ids):
    """Rank r's loss is its row mean weighted by W * B_r / N, so the mean over the ranks (what
    DDP's gradient average takes) is the single-process loss over all N rows and every
    gradient W times the single-process one, as with even batches. (Unweighted, DDP gave the
    rows of the rank with fewer too much weight: 34 % off in the gradient for 2 + 4 rows.)"""
    sizes = UNEVEN[case]
    out = {r: two_rank_results[(case, r, use_ids)] for r in range(WORLD)}
    a, t, ids = _data()
    a.requires_grad_()
    t.requires_grad_()
    single = InfoNCELoss(InfoNCEConfig(embedding_regularizer=REG)).double()(
        a, t, ids if use_ids else None)
    single.loss.backward()
    mean_loss = sum(out[r][0] for r in range(WORLD)) / WORLD
    assert mean_loss == pytest.approx(single.loss.item(), rel=1e-10)
    for r in range(WORLD):
        rows = _rows(r, sizes)
        torch.testing.assert_close(out[r][1], WORLD * a.grad[rows], rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(out[r][2], WORLD * t.grad[rows], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_every_rank_empty_is_a_clear_error_on_every_rank(two_rank_results):
    for r in range(WORLD):
        assert "every rank passed 0 rows" in two_rank_results[("all_empty_error", r)]
