"""Single-process training: AdamW, warm-up + cosine, gradient clipping, progress, JSONL metrics."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alp_cli.engine.schedule import build_optimizer
from alp_cli.metrics_log import MetricsLog
from alp_objectives.base import Objective, as_objective
from alp_objectives.outputs import LossOutput


def clip_ids(ids: list[str], device: torch.device) -> torch.Tensor:
    """Stable int64 ids from clip id strings, so objectives can find several captions per clip."""
    values = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=7).digest(), "little")
              for i in ids]
    return torch.tensor(values, dtype=torch.int64, device=device)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def training_step(
    model: nn.Module, objective: Objective, batch: dict[str, Any], device: torch.device
) -> LossOutput:
    """One forward pass through the step protocol of :mod:`alp_objectives.base`.

    The batch gains ``clip_ids``, then what the objective prepares (e.g. decoder inputs); the
    model adds its outputs; the objective reads what it declared.
    """
    step = to_device(batch, device)
    step["clip_ids"] = clip_ids(step["ids"], device)
    step.update(objective.prepare(step))
    step.update(model(step))
    return objective.compute(step)


@dataclass
class TrainSummary:
    steps: int
    samples: int
    seconds: float
    final_loss: float


class SingleProcessEngine:
    """Runs the optimisation loop of a two-tower model and an objective on one device."""

    def __init__(self, config: Any, device: torch.device, log: MetricsLog) -> None:
        self.config = config
        self.device = device
        self.log = log

    def fit(
        self,
        model: nn.Module,
        objective: nn.Module,
        loader: Iterable[dict[str, Any]],
        steps_per_epoch: int,
        on_batch_skipped: Callable[[list[Any]], None],
        on_epoch_end: Callable[[int, int], None] | None = None,
        set_epoch: Callable[[int], None] | None = None,
    ) -> TrainSummary:
        cfg = self.config
        total = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        objective = as_objective(objective)
        model.to(self.device).train()
        objective.to(self.device).train()
        # contrastive losses need in-batch negatives; a captioning loss scores a single clip
        min_batch = 2 if "text_embeds" in objective.requires else 1
        lrs = {"text": cfg.text_lr} if cfg.text_lr else None
        modules = {**split_text_side(model), "objective": objective}
        optimizer, scheduler = build_optimizer(
            modules, cfg.lr, cfg.weight_decay, max(total, 1), cfg.warmup_fraction, lrs)
        step, samples, last_loss, start = 0, 0, float("nan"), time.perf_counter()
        bar = _progress(total, cfg.progress)
        epoch = 0
        while step < total:
            if set_epoch is not None:
                set_epoch(epoch)
            epoch_start_step = step
            for batch in loader:
                on_batch_skipped(batch.get("skipped", []))
                if len(batch["ids"]) < min_batch:  # too few readable clips (or none)
                    continue
                out = training_step(model, objective, batch, self.device)
                loss, metrics = out.loss, dict(out.metrics)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} at step {step}; "
                                             "lower train.lr or check the data")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    metrics["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(
                        [p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip))
                optimizer.step()
                scheduler.step()
                step += 1
                samples += len(batch["ids"])
                last_loss = metrics["loss"]
                rate = samples / max(time.perf_counter() - start, 1e-9)
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3f}", samples_s=f"{rate:.0f}", epoch=epoch)
                if step % cfg.log_every == 0 or step == total:
                    self.log.write("train", step=step, epoch=epoch, samples=samples,
                                   lr=scheduler.get_last_lr()[0], samples_per_s=round(rate, 2),
                                   **{k: round(v, 6) for k, v in metrics.items()})
                if step >= total:
                    break
            if step == epoch_start_step:
                raise RuntimeError(f"epoch {epoch} yielded no usable batch (every batch had "
                                   f"fewer than {min_batch} readable clips); check the manifest")
            if on_epoch_end is not None:
                on_epoch_end(epoch, step)
            epoch += 1
        bar.close()
        seconds = time.perf_counter() - start
        return TrainSummary(step, samples, seconds, last_loss)


class _Params(nn.Module):
    """A view of some parameters of a model, so that they form one optimiser group."""

    def __init__(self, named: list[tuple[str, nn.Parameter]]) -> None:
        super().__init__()
        self._named = named

    def named_parameters(self, *args: Any, **kwargs: Any):  # type: ignore[override]
        yield from self._named


def split_text_side(model: nn.Module) -> dict[str, nn.Module]:
    """{"model": every parameter but the text tower's, "text": text encoder + text projection}."""
    text, rest = [], []
    for name, p in model.named_parameters():
        (text if name.startswith(("text_encoder.", "text_proj.")) else rest).append((name, p))
    return {"model": _Params(rest), "text": _Params(text)}


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
