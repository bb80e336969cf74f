"""The engine interface: what the training loop asks of single-process, DDP and DeepSpeed.

A loop drives any engine the same way::

    engine.setup(task, build_optimizer, build_schedule)
    for micro_step, batch in ...:
        boundary = (micro_step + 1) % accum == 0
        with engine.accumulate(boundary):            # DDP: no gradient sync between boundaries
            out = engine.forward(task.prepare(batch, engine.device))
            engine.backward(out.loss)
        stats = engine.step(boundary)                # clip, step, schedule at the boundary

Engines own backward, stepping, precision and their state on disk; the loop owns data, logging
and when to save.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from alp_objectives.outputs import LossOutput
from alp_train.distributed import DistInfo, gather_objects

log = logging.getLogger("alp.train")

__all__ = ["SCHEDULE_POSITION", "BuildOptimizer", "BuildSchedule", "Engine",
           "load_keeping_settings"]

BuildOptimizer = Callable[[nn.Module], torch.optim.Optimizer]
"""Builds the optimizer over the (unwrapped) task's parameter groups."""
BuildSchedule = Callable[[torch.optim.Optimizer], Any]
"""Builds the learning-rate schedule of an optimizer (stepped once per optimizer step)."""


class Engine(ABC):
    """Runs forward, backward and optimizer steps of a :class:`~alp_train.task.TrainTask`."""

    name = "engine"
    owns_weights = False
    """True when :meth:`load_state` restores the weights too (sharded engines)."""

    def __init__(self, config: Any, train: Any, dist: DistInfo) -> None:
        self.config = config
        self.train_config = train
        self.dist = dist
        self.task: nn.Module | None = None

    # -- facts ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    @classmethod
    def check_config(cls, config: Any, run: Any, nproc: int) -> None:
        """Refuse a run this engine cannot do, before any process starts (``alp run`` and
        ``--check`` call it with the engine's config, the whole run config and the process
        count); raise :class:`alp_core.ConfigError` naming the key. Default: nothing."""
        return None

    # -- training ------------------------------------------------------------------------
    def _place(self, task: nn.Module) -> nn.Module:
        """Move ``task`` to the device in train mode, compiled in place with
        ``train.compile`` (what every engine does before wrapping it)."""
        self.task = task.to(self.device)
        self.task.train()
        mode = getattr(self.train_config, "compile", False)
        if mode:
            compiled = self.task.compile_parts(  # type: ignore[operator]  # a TrainTask
                regional=mode == "regional")
            log.info("train.compile=%s: compiled modules per part %s", mode, compiled)
        return self.task

    @abstractmethod
    def setup(self, task: nn.Module, build_optimizer: BuildOptimizer,
              build_schedule: BuildSchedule) -> None:
        """Move/wrap ``task``, build the optimizer and schedule (in the engine's own way)."""

    @abstractmethod
    def forward(self, step: dict[str, Any]) -> LossOutput:
        """Loss and metrics of one prepared micro-batch (under the engine's precision)."""

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradient of ``loss`` (scaled for accumulation by the engine)."""

    @abstractmethod
    def step(self, boundary: bool) -> dict[str, float]:
        """End a micro-step; at an accumulation ``boundary`` clip, step and schedule.

        Returns metrics of the optimizer step (``grad_norm``, ``lr``) at a boundary, else {}.
        """

    def accumulate(self, boundary: bool) -> contextlib.AbstractContextManager[None]:
        """Context of one micro-step's forward + backward (DDP skips the sync off-boundary)."""
        return contextlib.nullcontext()

    @property
    @abstractmethod
    def lr(self) -> float:
        """The current learning rate of the first parameter group."""

    # -- state -----------------------------------------------------------------------------
    @abstractmethod
    def save_state(self, directory: Path) -> None:
        """Write the engine's state (optimizer, schedule, scaler; shards) under ``directory``.

        Called on every rank; an engine decides which ranks write.
        """

    @abstractmethod
    def load_state(self, directory: Path) -> None:
        """Restore what :meth:`save_state` wrote (called on every rank after :meth:`setup`)."""

    @abstractmethod
    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole task's weights on rank 0 (gathered where sharded); None on other ranks.

        Called on every rank (gathering may be collective).
        """

    # -- collectives -------------------------------------------------------------------------
    def barrier(self) -> None:
        if self.dist.distributed:
            dist.barrier()

    def reduce_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Mean of each metric over the ranks that report it.

        Ranks may report different keys (captioning's per-mode token accuracy exists only
        when a rank's batch had rows of that mode; a rank may report nothing): the keys are
        agreed first (one small object gather), so every rank reduces the same tensor. A
        NaN stays NaN in the mean."""
        if not self.dist.distributed:
            return metrics
        per_rank = gather_objects(sorted(metrics), self.dist)
        keys = sorted(set().union(*per_rank))
        if not keys:
            return {}
        device = self.device if self.device.type == "cuda" else torch.device("cpu")
        sums = torch.tensor([[float(metrics.get(k, 0.0)) for k in keys],
                             [1.0 if k in metrics else 0.0 for k in keys]],
                            dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        totals, counts = sums.tolist()
        return {k: total / count for k, total, count in zip(keys, totals, counts)}

    def peak_memory_mb(self) -> float:
        """Peak memory of this rank: GPU allocator peak, else the process's peak RSS."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def state_memory_mb(self) -> dict[str, float]:
        """What this rank holds of the training state: parameters and optimizer state (MB).

        Sharded engines report their shard; the sum over ranks is the whole state.
        """
        task = self.task
        params = sum(p.numel() * p.element_size() for p in task.parameters()) if task else 0
        optimizer = getattr(self, "optimizer", None)
        return {"params_mb": params / 2**20,
                "optimizer_mb": optimizer_state_bytes(optimizer) / 2**20}

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16/fp16 autocast per ``train.precision`` (fp32: nothing)."""
        precision = self.train_config.precision
        if precision == "fp32":
            yield
            return
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        with torch.autocast(self.device.type, dtype=dtype):
            yield


def optimizer_state_bytes(optimizer: Any) -> int:
    """Bytes of the tensors in a torch optimizer's ``state`` (moments, step counters)."""
    if optimizer is None:
        return 0
    total = 0
    for state in getattr(optimizer, "state", {}).values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
    return total


#: What a schedule's state keeps across a resume: where it stands. Everything else (base
#: rates, warm-up and total steps, Eden's constants) comes from the resumed run's config.
#: LambdaLR (the built-in warm-up/cosine and constant) stands at ``last_epoch``; a schedule
#: of another kind names its own position in a ``position_keys`` attribute (Eden does).
SCHEDULE_POSITION = frozenset({"last_epoch", "_step_count"})


def _position_keys(schedule: Any) -> frozenset[str] | None:
    declared = getattr(schedule, "position_keys", None)
    if declared is not None:
        return frozenset(declared) | SCHEDULE_POSITION
    if isinstance(schedule, torch.optim.lr_scheduler.LambdaLR):
        return SCHEDULE_POSITION
    return None  # its position may live anywhere (SequentialLR's children, T_cur, ...)


def load_keeping_settings(optimizer: Any, schedule: Any, load: Callable[[], None]) -> None:
    """Run ``load`` (restore optimizer and schedule state from a checkpoint), keeping the
    hyper-parameters the run's config built them with, then set each group's rate to what
    the schedule gives at its restored position.

    A checkpoint's optimizer state carries each group's ``lr``, ``initial_lr``, betas and
    weight decay, and a schedule's state its base rates and settings: loaded as they are, an
    ``alp run --resume RUN train.lr=... train.epochs=...`` silently kept the old values (a
    run extended by epochs trained at rate 0). Without overrides the result is the same as
    loading everything: the settings are equal and the rate is recomputed the same way. A
    schedule whose position this cannot tell apart from its settings (not a LambdaLR and
    without ``position_keys``) is restored whole, settings included, with a warning.
    """
    import copy
    import warnings

    keys = _position_keys(schedule)
    if keys is None:
        log.warning("resume: the %s schedule is restored whole from the checkpoint (its "
                    "settings too); schedule overrides given now do not apply",
                    type(schedule).__name__)
        load()
        return
    settings = [{k: v for k, v in g.items() if k not in ("params", "lr")}
                for g in optimizer.param_groups]
    # a copy: LambdaLR's load_state_dict updates its factor objects in place
    configured = copy.deepcopy({k: v for k, v in vars(schedule).items()
                                if k not in keys and k != "optimizer"})
    load()
    for group, kept in zip(optimizer.param_groups, settings, strict=True):
        group.update(kept)
    vars(schedule).update(configured)
    with warnings.catch_warnings():  # get_lr() outside step() warns; it is what step() sets
        warnings.simplefilter("ignore")
        rates = schedule.get_lr()
    for group, rate in zip(optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    schedule._last_lr = list(rates)
