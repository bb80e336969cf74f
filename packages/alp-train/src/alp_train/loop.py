"""The training loop: engine-agnostic, resumable mid-epoch, the same on every rank.

Every rank runs the same number of micro- and optimizer steps: the samplers give each rank
as many batches, and a batch too small to train on (too few readable clips) on any rank is
skipped by all ranks together, so collectives never fall out of step.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from alp_core.errors import DataError
from alp_train.checkpoint import Checkpointer, Progress
from alp_train.distributed import agree_each, all_agree, any_rank, gather_objects
from alp_train.engines.base import Engine
from alp_train.flops import peak_tflops
from alp_train.gradcache import contrastive_grad_cache
from alp_train.metrics_log import MetricsLog
from alp_train.progress import ProgressBar
from alp_train.signals import Preempted, StopFlag
from alp_train.task import TrainTask

__all__ = ["TrainPlan", "TrainSummary", "train_loop"]

log = logging.getLogger("alp.train")


@dataclass(frozen=True)
class TrainPlan:
    """How long to train and when to save."""

    epochs: int
    micro_batches_per_epoch: int
    accum: int = 1
    max_steps: int | None = None
    log_every: int = 10
    checkpoint_every_steps: int | None = None
    checkpoint_every_epochs: int | None = 1
    grad_cache_chunk: int | None = None
    validate_every: int | None = None
    seconds_per_frame: float = 0.01
    max_audio_seconds: float | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.micro_batches_per_epoch // self.accum

    @property
    def total_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        return min(total, self.max_steps) if self.max_steps is not None else total


@dataclass
class TrainSummary:
    """Where training ended (``steps``, ``samples``, ``audio_seconds``: the run's totals, a
    resumed run's earlier part included) and this session's own work (``seconds``,
    ``session_samples``, ``session_audio_seconds``: what rates are computed from)."""

    steps: int
    samples: int
    seconds: float
    final_loss: float
    audio_seconds: float = 0.0
    flops_per_step: float | None = None
    session_samples: int = 0
    session_audio_seconds: float = 0.0


def train_loop(
    engine: Engine,
    task: TrainTask,
    loader: Any,
    plan: TrainPlan,
    progress: Progress,
    checkpointer: Checkpointer,
    mlog: MetricsLog,
    *,
    on_batch_skipped: Callable[[list[Any]], bool | None],
    set_epoch: Callable[[int], None],
    stop: StopFlag | None = None,
    validate: Callable[[], tuple[float, int]] | None = None,
    show_progress: bool = True,
    flop_counter: Callable[[Callable[[], None]], float] | None = None,
    on_over_budget: Callable[[bool], None] | None = None,
) -> TrainSummary:
    """Train from ``progress`` (fresh or restored) to ``plan.total_steps``.

    ``flop_counter(fn)`` runs ``fn`` (the first micro-step) and returns its FLOPs; with it
    the log carries ``tflops_per_s`` (and ``mfu`` on a GPU whose peak is known) and the
    summary ``flops_per_step`` (one optimizer step: the micro-step's FLOPs x accumulation).

    ``on_batch_skipped(clips)`` records a batch's bad clips and returns True once this
    rank's are over the budget; then every rank calls ``on_over_budget(local)`` (``local``:
    this rank is the one over), which raises.
    """
    info = engine.dist
    total = plan.total_steps
    usable = plan.steps_per_epoch * plan.accum  # leftover micro-batches of an epoch are dropped
    min_batch = task.min_batch
    stop = stop or StopFlag()
    bar = ProgressBar(total, initial=progress.step, enabled=show_progress and info.is_main)
    t_begin = time.perf_counter()
    start, start_step = t_begin, progress.step
    begin_samples, begin_audio = progress.samples, progress.audio_seconds
    window = {"samples": 0.0, "seconds": 0.0}
    last_loss, flops = float("nan"), None
    while progress.step < total:
        set_epoch(progress.epoch)
        skip = getattr(loader, "skip", None) or getattr(
            getattr(loader, "batch_sampler", None), "skip", None)
        if progress.batches_in_epoch and skip is not None:
            skip(progress.batches_in_epoch)
        used_before, resumed_at = progress.micro_steps, progress.batches_in_epoch
        for batch in loader:
            if progress.batches_in_epoch >= usable:
                break
            progress.batches_in_epoch += 1
            # on_batch_skipped tells whether this rank's bad clips are now over the budget;
            # one all-reduce carries that and the batch's usability, so every rank stops at
            # the same step (one rank raising alone would leave the others in a collective)
            over = bool(on_batch_skipped(batch.get("skipped", [])))
            # gradient caching: every rank takes the same path (a rank caching while another
            # does not would wait in a different collective: the objective's replay gathers)
            plain = not (plan.grad_cache_chunk and len(batch["ids"]) > plan.grad_cache_chunk)
            big_enough, within, all_plain = agree_each(
                [len(batch["ids"]) >= min_batch, not over, plain], info)
            if not within:
                if on_over_budget is None:
                    raise DataError("a rank's bad clips are over the budget")
                on_over_budget(over)
            if not big_enough:
                progress.skipped_batches += 1
                continue
            boundary = (progress.micro_steps + 1) % plan.accum == 0
            step = task.prepare(batch, engine.device)

            def finite(loss: torch.Tensor) -> None:
                if not torch.isfinite(loss.detach()):
                    raise FloatingPointError(
                        f"rank {info.rank}: loss became {loss.item()} at step "
                        f"{progress.step + 1} (epoch {progress.epoch}); lower train.lr or "
                        "check the data")

            def run_step(step: dict[str, Any] = step, boundary: bool = boundary,
                         cached: bool = not all_plain) -> Any:
                if cached:  # exact for any chunk count, one chunk included
                    assert plan.grad_cache_chunk is not None
                    return contrastive_grad_cache(engine, task, step, plan.grad_cache_chunk,
                                                  boundary, check=finite)
                with engine.accumulate(boundary):
                    out = engine.forward(step)
                    finite(out.loss)
                    engine.backward(out.loss)
                return out

            if flop_counter is not None and flops is None:
                outputs: list[Any] = []

                def counted(outputs: list[Any] = outputs) -> None:
                    outputs.append(run_step())

                # one micro-step counted: an optimizer step is plan.accum of them
                flops = flop_counter(counted) * plan.accum
                out = outputs[0]
            else:
                out = run_step()
            stats = engine.step(boundary)
            progress.micro_steps += 1
            n = len(batch["ids"])
            progress.samples += n
            seconds = float(batch["feature_lengths"].sum()) * plan.seconds_per_frame
            progress.audio_seconds += seconds
            window["samples"] += n
            window["seconds"] += seconds
            if not boundary:
                continue
            progress.step += 1
            metrics = {**out.metrics, **stats}
            last_loss = float(metrics["loss"])
            elapsed = time.perf_counter() - start
            done = progress.step - start_step
            bar.update(progress.step, loss=last_loss, elapsed=elapsed, done=done,
                       samples=window["samples"] * info.world_size,
                       audio_s=window["seconds"] * info.world_size)
            if progress.step % plan.log_every == 0 or progress.step == total:
                reduced = engine.reduce_metrics(
                    {**metrics, "samples": window["samples"], "audio_s": window["seconds"]})
                last_loss = float(reduced["loss"])  # the mean over ranks
                rate = reduced.pop("samples") * info.world_size / max(elapsed, 1e-9)
                hours = reduced.pop("audio_s") * info.world_size / 3600 / max(elapsed, 1e-9)
                extra = {"samples_per_s": round(rate, 2), "audio_hours_per_s": round(hours, 5),
                         "peak_mem_mb": round(engine.peak_memory_mb(), 1)}
                if flops is not None:
                    achieved = flops * done / max(elapsed, 1e-9)
                    extra["tflops_per_s"] = float(f"{achieved / 1e12:.4g}")
                    peak = peak_tflops(engine.device)
                    if peak:
                        extra["mfu"] = round(achieved / (peak * 1e12), 4)
                mlog.write("train", step=progress.step, epoch=progress.epoch,
                           samples=progress.samples * info.world_size, **extra,
                           **reduced)  # full precision: resumed runs compare exactly
                window = {"samples": 0.0, "seconds": 0.0}
                start, start_step = time.perf_counter(), progress.step
            if validate is not None and plan.validate_every and \
                    progress.step % plan.validate_every == 0:
                _validate(validate, progress, checkpointer, mlog, engine)
            if plan.checkpoint_every_steps and progress.step % plan.checkpoint_every_steps == 0:
                checkpointer.save(progress)
            if any_rank(stop.raised, info):
                path = checkpointer.save(progress)
                mlog.write("preempted", step=progress.step, checkpoint=str(path))
                raise Preempted(stop.signum or 15, progress.step, str(path))
            if plan.max_audio_seconds is not None and progress.step < total and \
                    all_agree(progress.audio_seconds * info.world_size
                              >= plan.max_audio_seconds, info):
                total = progress.step  # the audio budget is spent (every rank agrees)
            if progress.step >= total:
                break
        if progress.micro_steps == used_before and progress.step < total and not resumed_at:
            raise RuntimeError(
                f"epoch {progress.epoch} yielded no usable batch (every batch had fewer than "
                f"{min_batch} readable clips on some rank); check the manifest")
        if progress.batches_in_epoch >= usable or progress.step < total:
            progress.epoch += 1
            progress.batches_in_epoch = 0
            every = plan.checkpoint_every_epochs
            if every and progress.epoch % every == 0:
                checkpointer.save(progress)
    bar.close()
    if any_rank(stop.raised, info):  # a signal during the last save: stop once it is saved
        path = checkpointer.save(progress)
        mlog.write("preempted", step=progress.step, checkpoint=str(path))
        raise Preempted(stop.signum or 15, progress.step, str(path))
    if info.distributed:  # the mean over ranks, as logged (every rank takes part)
        last_loss = float(engine.reduce_metrics({"loss": last_loss})["loss"])
    peaks = gather_objects(round(engine.peak_memory_mb(), 1), info)
    states = gather_objects({k: round(v, 3) for k, v in engine.state_memory_mb().items()}, info)
    mlog.write("memory", peak_mem_mb_per_rank=peaks, state_mb_per_rank=states)
    seconds = time.perf_counter() - t_begin
    return TrainSummary(progress.step, progress.samples * info.world_size, seconds, last_loss,
                        progress.audio_seconds * info.world_size, flops,
                        session_samples=(progress.samples - begin_samples) * info.world_size,
                        session_audio_seconds=(progress.audio_seconds - begin_audio)
                        * info.world_size)


def _validate(validate: Callable[[], tuple[float, int]], progress: Progress,
              checkpointer: Checkpointer, mlog: MetricsLog, engine: Engine) -> None:
    loss, clips = validate()
    best = progress.best_val_loss
    # a NaN (no batch scored, or a diverged model) is logged but never kept as the best
    improved = math.isfinite(loss) and (best is None or loss < best)
    mlog.write("validation", step=progress.step, val_loss=round(loss, 6), val_clips=clips,
               best=improved)
    if improved:
        progress.best_val_loss = loss
        checkpointer.save_best(progress)
