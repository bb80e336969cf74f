"""Two gloo processes: captioning's token mean over ranks with different token counts.

Rank 0 holds one caption of 2 tokens, rank 1 three captions of up to 5: each rank's plain
token mean, averaged by DDP, weighted rank 0's tokens by 1/2 each against 1/11 on rank 1. With
``sync_tokens`` (the default) the mean over ranks is the mean over all 13 tokens and the
gradients are the one-big-batch ones.
"""

from __future__ import annotations

import pytest
import torch

from alp_objectives import CaptioningConfig, CaptioningLoss

pytestmark = pytest.mark.distributed  # gloo processes (run alone: -m distributed)

WORLD, VOCAB, IGNORE = 2, 7, -100
TARGETS = torch.tensor([[3, 4, IGNORE, IGNORE, IGNORE],    # rank 0: 2 tokens
                        [5, 6, 3, 4, 2], [4, 4, 2, IGNORE, IGNORE],
                        [6, 5, 4, 2, IGNORE]])             # rank 1: 11 tokens
ROWS = {0: slice(0, 1), 1: slice(1, 4)}
PARALLEL = torch.tensor([True, False, True, False])  # rank 0: parallel rows only


def _logits() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.randn(4, 5, VOCAB, generator=g, dtype=torch.float64)


def _loss(sync: bool = True) -> CaptioningLoss:
    return CaptioningLoss(CaptioningConfig(label_smoothing=0.1, sync_tokens=sync), pad_id=0,
                          eos_id=2, vocab_size=VOCAB)


def _worker(rank: int, port: int, out: dict) -> None:
    for sync in (True, False):
        logits = _logits()[ROWS[rank]].clone().requires_grad_()
        res = _loss(sync)(logits, TARGETS[ROWS[rank]], PARALLEL[ROWS[rank]])
        res.loss.backward()
        out[(sync, rank)] = (res.loss.item(), res.metrics["loss"], logits.grad.clone(),
                             res.metrics)


@pytest.fixture(scope="module")
def ranks(spawn_ranks):
    return spawn_ranks(_worker, WORLD)


def test_the_mean_over_ranks_is_the_token_mean_of_the_whole_batch(ranks):
    logits = _logits().requires_grad_()
    single = _loss()(logits, TARGETS, PARALLEL)
    single.loss.backward()
    losses = [ranks[(True, r)][0] for r in range(WORLD)]
    assert sum(losses) / WORLD == pytest.approx(single.loss.item(), rel=1e-12)
    assert [ranks[(True, r)][1] for r in range(WORLD)] == losses  # the logged value too
    for r in range(WORLD):  # DDP's average of W x these is the single-process gradient
        torch.testing.assert_close(ranks[(True, r)][2], WORLD * logits.grad[ROWS[r]])
    # the accuracies are the whole batch's on every rank (so also their mean over ranks),
    # also the per-mode ones where rank 0 has no AR row
    assert "token_acc_ar" in single.metrics and single.metrics["parallel_fraction"] == 0.5
    for r in range(WORLD):
        metrics = ranks[(True, r)][3]
        for key in ("token_acc", "token_acc_ar", "token_acc_parallel", "parallel_fraction",
                    "n_tokens"):
            assert metrics[key] == pytest.approx(single.metrics[key], rel=1e-12), (r, key)
    # without sync_tokens: this rank's own (rank 0 saw no AR row)
    assert "token_acc_ar" not in ranks[(False, 0)][3]
    assert ranks[(False, 0)][3]["parallel_fraction"] == 1.0
    unsynced = sum(ranks[(False, r)][0] for r in range(WORLD)) / WORLD
    assert abs(unsynced - single.loss.item()) > 1e-3  # what a plain per-rank mean gives
