"""Two gloo processes: the local-rows-vs-global-batch InfoNCE equals the single-process loss."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from alp_objectives import InfoNCEConfig, InfoNCELoss

WORLD, PER_RANK, DIM = 2, 3, 5


def _data():
    g = torch.Generator().manual_seed(11)
    a = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    t = F.normalize(torch.randn(WORLD * PER_RANK, DIM, generator=g, dtype=torch.float64), dim=-1)
    ids = torch.tensor([4, 8, 4, 1, 8, 2])  # clips 4 and 8 have captions on both ranks
    return a, t, ids


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        a, t, ids = _data()
        rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
        for use_ids in (False, True):
            la, lt = a[rows].clone().requires_grad_(), t[rows].clone().requires_grad_()
            loss_fn = InfoNCELoss(InfoNCEConfig(embedding_regularizer=0.2)).double()
            res = loss_fn(la, lt, ids[rows] if use_ids else None)
            res.loss.backward()
            out[(rank, use_ids)] = (res.loss.item(), la.grad.clone(), lt.grad.clone())
    finally:
        dist.destroy_process_group()


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
