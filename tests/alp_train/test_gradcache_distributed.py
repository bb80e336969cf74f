"""Two gloo processes: gradient caching when the ranks' batches straddle the chunk size.

Rank 0 holds 6 rows, rank 1 holds 3, chunks of 4: rank 0 alone took the caching path, whose
last replay computes the objective again (its learnable temperature gathers across ranks)
while rank 1 sat in DDP's gradient all-reduce, and both timed out. Every rank now takes the
path any rank needs, and the step equals one process over the 9 rows.
"""

from __future__ import annotations

import tempfile
import types

import pytest
import torch
from tests.alp_train.test_loop import Tiny, batch

from alp_objectives import InfoNCEConfig, InfoNCELoss
from alp_train.checkpoint import Checkpointer, Progress
from alp_train.distributed import DistInfo
from alp_train.engines.configs import DDPEngineConfig, SingleEngineConfig
from alp_train.engines.torch_engines import DDPEngine, SingleEngine
from alp_train.loop import TrainPlan, train_loop
from alp_train.metrics_log import NullLog
from alp_train.task import TrainTask

pytestmark = pytest.mark.distributed  # gloo processes (run alone: -m distributed)

SIZES = (6, 3)


def _task() -> TrainTask:
    torch.manual_seed(0)
    return TrainTask(Tiny(), InfoNCELoss(InfoNCEConfig(learnable_temperature=True))).double()


def _step(engine_cls, config, info: DistInfo, rows: slice) -> dict[str, torch.Tensor]:
    task = _task()
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=None)
    engine = engine_cls(config, train, info)
    engine.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=0.5),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    full = batch(sum(SIZES), 7)
    part = {k: (v[rows] if not isinstance(v, list) or k == "ids" else v)
            for k, v in full.items()}
    part["ids"] = full["ids"][rows]
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=1, accum=1, log_every=1,
                     grad_cache_chunk=4)
    with tempfile.TemporaryDirectory() as folder:
        train_loop(engine, task, [part], plan, Progress(),
                   Checkpointer(folder, engine, info, keep_last=1), NullLog(),
                   on_batch_skipped=lambda skipped: None, set_epoch=lambda e: None,
                   show_progress=False)
    return {n: p.detach().clone() for n, p in task.named_parameters()}


def _final_loss(info: DistInfo, rows: slice) -> float:
    """The summary's final loss when an audio budget ends the run between log steps."""
    task = _task()
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=None)
    engine = (DDPEngine(DDPEngineConfig(), train, info) if info.distributed
              else SingleEngine(SingleEngineConfig(), train, info))
    engine.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=0.0),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    full = batch(sum(SIZES), 7)
    part = {**full, "ids": full["ids"][rows], **{k: full[k][rows] for k in (
        "features", "feature_lengths", "input_ids", "attention_mask")}}
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=2, accum=1, log_every=10,
                     max_audio_seconds=1e-3, seconds_per_frame=0.01)
    with tempfile.TemporaryDirectory() as folder:
        summary = train_loop(engine, task, [part, part], plan, Progress(),
                             Checkpointer(folder, engine, info, keep_last=1), NullLog(),
                             on_batch_skipped=lambda skipped: None, set_epoch=lambda e: None,
                             show_progress=False)
    assert summary.steps == 1  # the budget ended it before any log step
    return summary.final_loss


def _worker(rank: int, port: int, out: dict) -> None:
    start = sum(SIZES[:rank])
    info = DistInfo(rank=rank, world_size=2)
    rows = slice(start, start + SIZES[rank])
    out[rank] = _step(DDPEngine, DDPEngineConfig(), info, rows)
    out[("final", rank)] = _final_loss(info, rows)


@pytest.fixture(scope="module")
def ranks(spawn_ranks):
    return spawn_ranks(_worker, 2)


def test_ranks_on_both_sides_of_the_chunk_size_take_one_path_and_match_one_process(ranks):
    single = _step(SingleEngine, SingleEngineConfig(), DistInfo(), slice(0, sum(SIZES)))
    for name, value in single.items():
        torch.testing.assert_close(ranks[0][name], ranks[1][name], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-10, atol=1e-12, msg=name)


def test_the_final_loss_is_the_mean_over_ranks_not_rank_0s(ranks):
    # each rank's loss is weighted by its share; the summary took rank 0's alone whenever the
    # last step was not a log step
    single = _final_loss(DistInfo(), slice(0, sum(SIZES)))
    assert ranks[("final", 0)] == ranks[("final", 1)] == pytest.approx(single, rel=1e-10)
