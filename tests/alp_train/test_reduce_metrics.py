"""Two gloo processes: metric means over ranks that report different keys, validation
batches skipped only when every rank skips them, a bad-clip budget that stops every rank
at the same step, and checkpoints that keep every rank's skipped clips.

Captioning reports its per-mode token accuracy only when a rank's batch had rows of that mode,
so at a log step the ranks' metric dicts can differ. Each rank packing its own sorted keys
into one all-reduce then sent tensors of different sizes (gloo: "Received data size doesn't
match expected size"; NCCL: a hang, or unrelated metrics averaged together).
"""

from __future__ import annotations

import contextlib
import math
import os
import types

import pytest
import torch
import torch.distributed as dist

from alp_train.distributed import DistInfo
from alp_train.engines.base import Engine

pytestmark = pytest.mark.distributed  # gloo processes (run alone: -m distributed)

METRICS = [  # rank 0, rank 1
    ({"loss": 1.0, "token_acc_ar": 0.5}, {"loss": 3.0, "token_acc_parallel": 0.25}),
    ({"loss": 2.0, "token_acc_ar": 0.25, "token_acc_parallel": 0.75}, {"loss": 4.0}),
    ({}, {"loss": 5.0}),
    ({"loss": float("nan")}, {"loss": 1.0}),
]


class _GatheringTask(torch.nn.Module):
    """A contrastive-like task: its forward takes part in a collective, as InfoNCE's gather
    does, so a rank that skips a batch the other computes leaves the other waiting."""

    min_batch = 2

    def prepare(self, batch, device):
        return batch

    def forward(self, step):
        loss = torch.tensor([float(len(step["ids"]))], dtype=torch.float64)
        dist.all_reduce(loss)
        return types.SimpleNamespace(loss=loss[0])


class _PerClipTask(torch.nn.Module):
    """Loss = mean of id² over the global batch, as ALP's objectives weight it: each rank's
    sum over its clips / (N / W), so the mean over ranks is the global batch's mean (a per-clip
    loss, so the validation mean over every clip is known); its forward is a collective."""

    min_batch = 1
    rank_weighted = True

    def prepare(self, batch, device):
        return batch

    def forward(self, step):
        ids = torch.tensor(step["ids"], dtype=torch.float64)
        count = torch.tensor([float(len(ids))], dtype=torch.float64)
        dist.all_reduce(count)
        return types.SimpleNamespace(loss=(ids**2).sum() * dist.get_world_size() / count[0])


class _PlainMeanTask(_PerClipTask):
    """A plugin's plain per-rank mean of id² (no rank weighting): the validation loss must
    still be the mean over every clip."""

    rank_weighted = False

    def forward(self, step):
        dist.all_reduce(torch.zeros(1))
        return types.SimpleNamespace(loss=(torch.tensor(step["ids"], dtype=torch.float64)
                                           ** 2).mean())


class _GatheringWeightedTask(_PerClipTask):
    """A weighted objective that needs 2 clips globally (a contrastive one): a rank with
    one clip of a global batch still scores it."""

    min_batch = 2


def _collate(items):
    from alp_data.transform import BadClip

    bad = [BadClip(index=5, id="c5", path="/x/c5.wav", error="truncated", reason="decode")]
    return {"ids": [i for i in items if i != 5], "skipped": bad if 5 in items else []}


class _Loader(list):
    batch_sampler = None
    dataset = None


def _budget_run(rank: int, info: DistInfo) -> tuple[int, bool]:
    """train_loop where only rank 1's third batch brings bad clips over the budget; returns
    (the batch every rank stopped at, whether this rank was the one over)."""
    import tempfile

    from tests.alp_train.test_loop import batch, make_engine, make_task

    from alp_data.transform import BadClip
    from alp_train.checkpoint import Checkpointer, Progress
    from alp_train.loop import TrainPlan, train_loop
    from alp_train.metrics_log import NullLog

    task = make_task()
    engine = make_engine(task)
    engine.dist = info
    bad = [BadClip(index=i, id=f"gone{i}", path=f"/x/gone{i}.wav", error="missing",
                   reason="missing") for i in range(3)]
    batches = [batch(4, s, start=4 * s) for s in range(5)]
    if rank == 1:
        batches[2] = {**batches[2], "skipped": bad}
    seen: list[int] = []

    def on_skipped(clips):
        seen.append(len(seen))
        return len(clips) > 2  # the budget: 2 clips

    def over(local):
        raise RuntimeError(f"over at batch {len(seen)} local={local}")

    plan = TrainPlan(epochs=1, micro_batches_per_epoch=5, accum=1, log_every=1,
                     checkpoint_every_epochs=1)
    with tempfile.TemporaryDirectory() as folder:
        try:
            train_loop(engine, task, batches, plan, Progress(),
                       Checkpointer(folder, engine, info, keep_last=1), NullLog(),
                       on_batch_skipped=on_skipped, set_epoch=lambda e: None,
                       show_progress=False, on_over_budget=over)
        except RuntimeError as err:
            words = str(err).split()
            return int(words[3]), words[4] == "local=True"
    return -1, False


def _checkpoint_round_trip(rank: int, info: DistInfo, port: int) -> list[str]:
    """Each rank saves with its own skipped clips; returns what this rank resumes with."""
    import shutil
    import tempfile

    from tests.alp_train.test_loop import make_engine, make_task

    from alp_train.checkpoint import Checkpointer, Progress

    folder = os.path.join(tempfile.gettempdir(), f"alp-ckpt-test-{port}")
    engine = make_engine(make_task())
    engine.dist = info
    progress = Progress(step=3, skipped_clips=[{"id": f"bad-of-rank-{rank}", "path": "/x"}])
    checkpointer = Checkpointer(folder, engine, info, keep_last=1)
    try:
        loaded = checkpointer.load(checkpointer.save(progress))
        return [c["id"] for c in loaded.skipped_clips]
    finally:
        dist.barrier()
        if rank == 0:
            shutil.rmtree(folder, ignore_errors=True)


def _worker(rank: int, port: int, out: dict) -> None:
    info = DistInfo(rank=rank, world_size=2)
    engine = types.SimpleNamespace(dist=info, device=torch.device("cpu"), world_size=2)
    out[rank] = [Engine.reduce_metrics(engine, pair[rank]) for pair in METRICS]
    from alp_train.recipe import validation_loss

    engine.autocast = contextlib.nullcontext
    engine.reduce_metrics = lambda metrics: Engine.reduce_metrics(engine, metrics)
    # rank 1's second batch lost a clip (one left: below min_batch); rank 0's did not
    sizes = [[4, 3, 4], [4, 1, 4]][rank]
    loader = _Loader({"ids": list(range(n))} for n in sizes)
    out[f"val{rank}"] = validation_loss(engine, _GatheringTask(), loader)
    # a real sharded evaluation loader over 9 clips (not a multiple of 2 ranks x batch 2),
    # clip 5 unreadable: every other clip is scored once, the bad one is reported
    from alp_data.loader import build_loader

    real = build_loader(list(range(9)), batch_size=2, shuffle=True, num_workers=0,
                        collator=_collate, seed=3, rank=rank, world_size=2)
    met: list = []
    out[f"every{rank}"] = validation_loss(engine, _PerClipTask(), real, on_skipped=met.extend)
    out[f"met{rank}"] = [c.id for c in met]
    out[f"plain{rank}"] = validation_loss(engine, _PlainMeanTask(), real)
    # 9 clips in batches of 4 over 2 ranks: rank 0 [4, 1], rank 1 [2, 2] after the split
    wide = build_loader(list(range(9)), batch_size=4, shuffle=False, num_workers=0,
                        collator=lambda items: {"ids": list(items), "skipped": []},
                        rank=rank, world_size=2)
    out[f"wide{rank}"] = validation_loss(engine, _GatheringWeightedTask(), wide)
    out[f"budget{rank}"] = _budget_run(rank, info)
    out[f"resumed{rank}"] = _checkpoint_round_trip(rank, info, port)


@pytest.fixture(scope="module")
def reduced(spawn_ranks):
    return spawn_ranks(_worker, 2)


def test_every_rank_gets_the_mean_over_the_ranks_that_report_each_key(reduced):
    assert reduced[0][:3] == reduced[1][:3]
    first, second, third, fourth = reduced[0]
    assert first == {"loss": 2.0, "token_acc_ar": 0.5, "token_acc_parallel": 0.25}
    assert second == {"loss": 3.0, "token_acc_ar": 0.25, "token_acc_parallel": 0.75}
    assert third == {"loss": 5.0}  # a rank with nothing to report still takes part
    assert math.isnan(fourth["loss"])  # a NaN is not hidden as a missing key


def test_validation_skips_a_batch_only_where_every_rank_does(reduced):
    # both ranks computed batches 1 and 3 (all-reduced sizes 8 and 8), both skipped batch 2
    assert reduced["val0"] == reduced["val1"] == (pytest.approx(8.0), 16)


def test_validation_over_ranks_scores_every_clip_once_and_reports_bad_ones(reduced):
    # clips 0..8 without the unreadable 5: mean of id² over the 8 others (the sampler used to
    # drop the clip left over after an equal split, and bad clips went uncounted)
    expected = sum(i * i for i in range(9) if i != 5) / 8
    assert reduced["every0"] == reduced["every1"] == (pytest.approx(expected), 8)
    assert sorted(reduced["met0"] + reduced["met1"]) == ["c5"]
    # a plain per-rank mean (no rank weighting) is added up by each rank's own clips
    assert reduced["plain0"] == reduced["plain1"] == (pytest.approx(expected), 8)
    # a batch where one rank holds 1 clip and the other 2 has 3 to score globally: kept
    assert reduced["wide0"] == reduced["wide1"] == (pytest.approx(sum(i * i for i in range(9))
                                                                  / 9), 9)


def test_a_rank_over_the_bad_clip_budget_stops_every_rank_at_that_step(reduced):
    """Raising on the rank that went over alone left the other in its next collective (an
    error on gloo, a hang on NCCL) and no skipped-clips list was written."""
    assert reduced["budget0"] == (3, False)
    assert reduced["budget1"] == (3, True)


def test_one_process_returns_its_metrics():
    engine = types.SimpleNamespace(dist=DistInfo(), device=torch.device("cpu"), world_size=1)
    assert Engine.reduce_metrics(engine, {"loss": 1.5}) == {"loss": 1.5}


def test_every_rank_resumes_with_its_own_skipped_clips(reduced):
    # the checkpoint held rank 0's list only, so a resumed run forgot rank 1's bad clips
    assert reduced["resumed0"] == ["bad-of-rank-0"]
    assert reduced["resumed1"] == ["bad-of-rank-1"]
