"""train_loop with the single engine on a tiny task: failures, clipping, accumulation, saving."""

from __future__ import annotations

import copy
import json
import math
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from alp_objectives.base import ContrastiveObjective
from alp_objectives.outputs import LossOutput
from alp_train.checkpoint import Checkpointer, Progress
from alp_train.distributed import DistInfo
from alp_train.engines.torch_engines import SingleEngine, SingleEngineConfig
from alp_train.loop import TrainPlan, train_loop
from alp_train.metrics_log import MetricsLog, NullLog, read_metrics
from alp_train.task import TrainTask

MELS, VOCAB, LR = 4, 9, 0.1


class Tiny(nn.Module):
    """Two linear towers: the model contract, no normalisation (a simple regression)."""

    def __init__(self) -> None:
        super().__init__()
        self.audio = nn.Linear(MELS, 3)
        self.tokens = nn.Embedding(VOCAB, 3)

    def forward(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"audio_embeds": self.audio(step["features"]).mean(dim=1),
                "text_embeds": self.tokens(step["input_ids"]).mean(dim=1)}


class PairDistance(ContrastiveObjective):
    """Mean over the batch of squared audio-text distances: a per-sample-mean loss."""

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor,
                clip_ids: torch.Tensor | None = None) -> LossOutput:
        loss = (audio_embeds - text_embeds).pow(2).sum(-1).mean()
        return LossOutput(loss, {"loss": loss.item()})


def batch(n: int, seed: int, start: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    return {"ids": [f"c{start + i}" for i in range(n)],
            "features": torch.randn(n, 5, MELS, generator=gen, dtype=torch.float64),
            "feature_lengths": torch.full((n,), 5),
            "input_ids": torch.randint(0, VOCAB, (n, 3), generator=gen),
            "attention_mask": torch.ones(n, 3, dtype=torch.long), "skipped": []}


def make_task() -> TrainTask:
    torch.manual_seed(0)
    return TrainTask(Tiny(), PairDistance()).double()


def make_engine(task: TrainTask, accum: int = 1, clip: float | None = None) -> SingleEngine:
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=accum, grad_clip=clip)
    engine = SingleEngine(SingleEngineConfig(), train, DistInfo())
    engine.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=LR),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    return engine


def run(tmp_path: Path, task: TrainTask, batches: list[dict[str, Any]], *, epochs: int = 1,
        accum: int = 1, clip: float | None = None, epochs_seen: list[int] | None = None,
        ) -> tuple[Any, Path]:
    engine = make_engine(task, accum, clip)
    plan = TrainPlan(epochs=epochs, micro_batches_per_epoch=len(batches), accum=accum,
                     log_every=1, checkpoint_every_epochs=1)
    seen = epochs_seen if epochs_seen is not None else []
    with MetricsLog(tmp_path / "metrics.jsonl") as mlog:
        summary = train_loop(engine, task, batches, plan, Progress(),
                             Checkpointer(tmp_path, engine, DistInfo(), keep_last=10), mlog,
                             on_batch_skipped=lambda skipped: None, set_epoch=seen.append,
                             show_progress=False)
    return summary, tmp_path


def params(task: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in task.named_parameters()}


def test_a_non_finite_loss_names_the_step(tmp_path: Path):
    bad = batch(4, 2)
    bad["features"][1, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 2 \(epoch 0\)"):
        run(tmp_path, make_task(), [batch(4, 1), bad, batch(4, 3)])


def test_an_epoch_without_a_usable_batch_is_an_error(tmp_path: Path):
    # a contrastive objective needs 2 clips per batch; every batch has 1 readable clip
    with pytest.raises(RuntimeError, match="epoch 0 yielded no usable batch .*fewer than 2"):
        run(tmp_path, make_task(), [batch(1, s) for s in range(3)])


def test_too_small_batches_are_skipped_and_the_rest_trains(tmp_path: Path):
    epochs: list[int] = []
    summary, run_dir = run(tmp_path, make_task(), [batch(1, 0), batch(4, 1)], epochs=1,
                           epochs_seen=epochs)
    # the plan counts 2 steps; each epoch has one usable batch, so the loop goes on into the
    # next epoch until the planned step count is reached
    assert summary.steps == 2 and summary.samples == 8
    assert epochs == [0, 1]
    records = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2]


def test_clipping_logs_the_unclipped_norm_and_steps_with_the_clipped_gradient(tmp_path: Path):
    task = make_task()
    b = batch(4, 7)
    reference = copy.deepcopy(task)
    before = params(reference)
    out = reference(reference.prepare(b, torch.device("cpu")))
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in reference.named_parameters()}
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads.values())).item()
    clip = norm / 4  # clipping is active: the update is a quarter of the plain one
    summary, run_dir = run(tmp_path, task, [b], clip=clip)

    logged = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert len(logged) == 1
    assert logged[0]["grad_norm"] == pytest.approx(norm, rel=1e-12)
    assert logged[0]["loss"] == pytest.approx(out.loss.item(), rel=1e-12)
    assert summary.final_loss == pytest.approx(out.loss.item(), rel=1e-12)
    scale = clip / (norm + 1e-6)
    after = params(task)
    for name, g in grads.items():
        torch.testing.assert_close(after[name], before[name] - LR * scale * g,
                                   atol=1e-12, rtol=0, msg=name)
        assert not torch.allclose(after[name], before[name] - LR * g)  # not the unclipped step


def test_accumulating_two_halves_equals_one_full_batch(tmp_path: Path):
    full = batch(8, 11)
    halves = [{k: (v[:4] if i == 0 else v[4:]) if k != "skipped" else []
               for k, v in full.items()} for i in range(2)]
    start = params(make_task())

    task_a = make_task()
    run(tmp_path / "a", task_a, halves, accum=2)
    task_b = make_task()
    run(tmp_path / "b", task_b, [full], accum=1)
    a, b = params(task_a), params(task_b)
    for name in a:
        assert not torch.equal(a[name], start[name]), name  # a step was taken
        torch.testing.assert_close(a[name], b[name], atol=1e-12, rtol=0, msg=name)

    # only the first half (a stub that dropped micro-batches) would be another update
    task_c = make_task()
    run(tmp_path / "c", task_c, halves[:1], accum=1)
    assert any(not torch.allclose(params(task_c)[n], b[n]) for n in b)


def test_a_checkpoint_per_epoch(tmp_path: Path):
    epochs: list[int] = []
    summary, run_dir = run(tmp_path, make_task(), [batch(4, 1), batch(4, 2, start=4)],
                           epochs=3, epochs_seen=epochs)
    assert summary.steps == 6 and summary.samples == 24
    assert epochs == [0, 1, 2]
    root = run_dir / "checkpoints"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == ["step-00000002", "step-00000004", "step-00000006"]
    assert (root / "latest").read_text().strip() == "step-00000006"
    for epoch, name in enumerate(folders, start=1):
        progress = json.loads((root / name / "progress.json").read_text())
        assert progress["epoch"] == epoch and progress["batches_in_epoch"] == 0
        assert progress["step"] == 2 * epoch and progress["samples"] == 8 * epoch
        assert {p.name for p in (root / name).iterdir()} >= {
            "model.safetensors", "engine.json", "engine.safetensors", "rng.json",
            "progress.json"}
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_flops_per_step_count_every_micro_step_of_an_accumulated_step(tmp_path: Path):
    """TFLOP/s and MFU come from the first micro-step's FLOP count: with 2 micro-steps per
    optimizer step, a step does twice that work."""
    from alp_train.flops import count_step_flops

    task = make_task()
    engine = make_engine(task, accum=2)
    batches = [batch(4, s, start=4 * s) for s in range(4)]
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=len(batches), accum=2, log_every=1,
                     checkpoint_every_epochs=1)
    micro: list[float] = []

    def counter(fn):
        micro.append(count_step_flops(fn))
        return micro[-1]

    with MetricsLog(tmp_path / "metrics.jsonl") as mlog:
        summary = train_loop(engine, task, batches, plan, Progress(),
                             Checkpointer(tmp_path, engine, DistInfo(), keep_last=10), mlog,
                             on_batch_skipped=lambda skipped: None, set_epoch=lambda e: None,
                             show_progress=False, flop_counter=counter)
    # the towers' matrix products: 4 clips x 5 frames through the 4 -> 3 audio linear,
    # 2 * 4 * 3 FLOPs a frame forward and as many backward (the weight's gradient only: the
    # features need none); the embedding lookup counts none
    assert micro == [4 * 5 * (2 * 4 * 3) * 2]
    assert summary.flops_per_step == 2 * micro[0]
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "train"]
    assert len(records) == 2 and all(r["tflops_per_s"] > 0 for r in records)
    for r in records:  # TFLOP/s over samples/s = FLOPs per sample (8 samples a step)
        per_sample = r["tflops_per_s"] * 1e12 / r["samples_per_s"]
        assert per_sample == pytest.approx(summary.flops_per_step / 8, rel=0.05)


def test_a_step_the_loss_scaler_skips_does_not_advance_the_schedule():
    """fp16: inf gradients make the scaler skip the update; the schedule must not count it
    (else warm-up shifts and torch warns that the schedule stepped before the optimizer)."""
    task = TrainTask(Tiny(), PairDistance())  # float32: the scaler refuses float64 grads
    engine = make_engine(task)
    engine.scaler = torch.amp.GradScaler("cpu", init_scale=8.0)  # fp16's scaler, on the CPU
    lrs: list[float] = []
    engine.schedule = torch.optim.lr_scheduler.LambdaLR(
        engine.optimizer, lambda s: (lrs.append(s), 1.0)[1])
    before = params(task)
    good = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in batch(4, 1).items()}
    out = engine.forward(task.prepare(good, engine.device))
    engine.backward(out.loss * float("inf"))  # inf gradients, as an fp16 overflow gives
    stats = engine.step(True)
    assert stats["loss_scale"] == 8.0 and engine.scaler.get_scale() == 4.0
    assert lrs == [0]  # built at step 0; not stepped
    assert all(torch.equal(before[k], p) for k, p in params(task).items())
    out = engine.forward(task.prepare(good, engine.device))
    engine.backward(out.loss)
    engine.step(True)
    assert lrs == [0, 1]  # a taken step advances it
    assert not all(torch.equal(before[k], p) for k, p in params(task).items())


def test_a_validation_without_a_scored_clip_is_logged_as_nan_never_as_the_best(tmp_path: Path):
    task = make_task()
    engine = make_engine(task)
    results = iter([(math.nan, 0), (2.0, 8), (3.0, 8), (1.5, 8)])
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=4, accum=1, log_every=1,
                     validate_every=1)
    with MetricsLog(tmp_path / "metrics.jsonl") as mlog:
        progress = Progress()
        train_loop(engine, task, [batch(4, s) for s in range(4)], plan, progress,
                   Checkpointer(tmp_path / "checkpoints", engine, DistInfo(), keep_last=1),
                   mlog, on_batch_skipped=lambda skipped: None, set_epoch=lambda e: None,
                   validate=lambda: next(results), show_progress=False)
    rows = [r for r in read_metrics(tmp_path / "metrics.jsonl") if r["event"] == "validation"]
    assert [r["best"] for r in rows] == [False, True, False, True]
    assert [r["val_clips"] for r in rows] == [0, 8, 8, 8]
    assert progress.best_val_loss == 1.5


def test_a_non_finite_loss_under_gradient_caching_stops_before_any_update(tmp_path: Path):
    # the cached path skipped the check: NaN gradients reached the optimizer
    task = make_task()
    engine = make_engine(task)
    bad = batch(4, 2)
    bad["features"][1, 0, 0] = float("nan")
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=3, accum=1, log_every=1,
                     grad_cache_chunk=2)
    before = params(task)
    with MetricsLog(tmp_path / "metrics.jsonl") as mlog, \
            pytest.raises(FloatingPointError, match=r"loss became nan at step 2"):
        train_loop(engine, task, [batch(4, 1), bad, batch(4, 3)], plan, Progress(),
                   Checkpointer(tmp_path, engine, DistInfo(), keep_last=1), mlog,
                   on_batch_skipped=lambda skipped: None, set_epoch=lambda e: None,
                   show_progress=False)
    after = params(task)
    assert all(torch.isfinite(p).all() for p in after.values())
    assert any(not after[k].equal(before[k]) for k in before)  # step 1 did train


def test_saving_a_step_again_never_leaves_it_half_deleted(tmp_path: Path, monkeypatch):
    # the same step saved twice (an epoch's end on a periodic save; a preemption after a save)
    # deleted the complete folder in place first: a kill then left a half-deleted checkpoint
    # that --resume picked, or none at all
    from alp_train.checkpoint import latest_checkpoint

    task = make_task()
    engine = make_engine(task)
    checkpointer = Checkpointer(tmp_path, engine, DistInfo(), keep_last=1)
    checkpointer.save(Progress(step=4))
    original = Path.replace
    calls = []

    def killed_between_the_renames(self, target):
        calls.append(Path(self).name)
        if Path(self).name == "step-00000004.tmp":  # the new folder, about to be put in place
            raise KeyboardInterrupt("killed")
        return original(self, target)

    monkeypatch.setattr(Path, "replace", killed_between_the_renames)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save(Progress(step=4, samples=7))
    monkeypatch.setattr(Path, "replace", original)
    found = latest_checkpoint(tmp_path)  # the first save, complete, renamed aside
    assert found is not None and found.name == "step-00000004.replaced"
    assert Checkpointer(tmp_path, make_engine(make_task()), DistInfo()).load(found).step == 4
    checkpointer.save(Progress(step=5))  # the next save clears what the kill left
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest", "step-00000005"]


def test_a_signal_during_the_last_save_stops_the_run_and_rates_count_this_session(
        tmp_path: Path):
    # a SIGTERM that came while the epoch-end checkpoint was written was dropped: the run went
    # on to evaluate and exited 0; and a resumed run's rates divided all samples by this
    # session's seconds
    from alp_train.signals import Preempted, StopFlag

    task = make_task()
    engine = make_engine(task)
    stop = StopFlag()
    checkpointer = Checkpointer(tmp_path, engine, DistInfo(), keep_last=2)
    save = checkpointer.save

    def save_then_signal(progress):
        path = save(progress)
        stop.signum = 15  # arrives during the final (epoch-end) save
        return path

    checkpointer.save = save_then_signal  # type: ignore[method-assign]
    plan = TrainPlan(epochs=1, micro_batches_per_epoch=2, accum=1, log_every=1,
                     checkpoint_every_epochs=1)
    with MetricsLog(tmp_path / "metrics.jsonl") as mlog, pytest.raises(Preempted):
        train_loop(engine, task, [batch(4, 1), batch(4, 2)], plan, Progress(), checkpointer,
                   mlog, on_batch_skipped=lambda s: None, set_epoch=lambda e: None,
                   stop=stop, show_progress=False)
    events = [r["event"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert events[-1] == "preempted"

    plan = TrainPlan(epochs=2, micro_batches_per_epoch=2, accum=1, log_every=1)
    summary = train_loop(make_engine(task), task, [batch(4, 1), batch(4, 2)], plan,
                         Progress(step=2, epoch=1, samples=8), Checkpointer(
                             tmp_path / "b", engine, DistInfo()), NullLog(),
                         on_batch_skipped=lambda s: None, set_epoch=lambda e: None,
                         show_progress=False)
    assert (summary.samples, summary.session_samples) == (16, 8)


def test_a_damaged_checkpoint_file_is_an_error_naming_the_checkpoint(tmp_path: Path):
    engine = make_engine(make_task())
    checkpointer = Checkpointer(tmp_path, engine, DistInfo())
    path = checkpointer.save(Progress(step=3))
    (path / "progress.json").write_text('{"step": 3, "epo')  # cut short
    with pytest.raises(RuntimeError, match=r"checkpoint .*step-00000003 cannot be read "
                                           r"\(JSONDecodeError"):
        Checkpointer(tmp_path, make_engine(make_task()), DistInfo()).load(path)
