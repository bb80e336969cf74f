"""Engines on plain PyTorch: one process (``single``) and DistributedDataParallel (``ddp``).

Both clip gradients by their global norm, step a torch optimizer and its schedule at each
accumulation boundary, and use autocast for bf16/fp16 (fp16 with a ``GradScaler``, GPU only).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alp_core import ConfigError
from alp_objectives.outputs import LossOutput
from alp_train.engines.base import BuildOptimizer, BuildSchedule, Engine, load_keeping_settings
from alp_train.engines.configs import DDPEngineConfig, SingleEngineConfig
from alp_train.state_io import load_state, save_state

__all__ = ["DDPEngine", "DDPEngineConfig", "SingleEngine", "SingleEngineConfig"]


class SingleEngine(Engine):
    """Forward, backward and AdamW-style steps in this process."""

    name = "single"

    @classmethod
    def check_config(cls, config: Any, run: Any, nproc: int) -> None:
        if nproc > 1 and cls.name == "single":
            raise ConfigError(f"train.nproc is {nproc} but train.engine is 'single' (one "
                              "process); use train.engine.name=ddp or deepspeed")

    def __init__(self, config: Any, train: Any, dist: Any) -> None:
        super().__init__(config, train, dist)
        if train.precision == "fp16" and dist.device.type != "cuda":
            raise ConfigError("train.precision: fp16 needs a GPU (loss scaling); "
                              "on the CPU use bf16 or fp32")
        self.module: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.schedule: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self._accum = int(train.grad_accum_steps)

    def setup(self, task: nn.Module, build_optimizer: BuildOptimizer,
              build_schedule: BuildSchedule) -> None:
        placed = self._place(task)
        self.module = self._wrap(placed)
        self.optimizer = build_optimizer(placed)
        self.schedule = build_schedule(self.optimizer)
        if self.train_config.precision == "fp16":
            self.scaler = torch.amp.GradScaler("cuda")

    def _wrap(self, task: nn.Module) -> nn.Module:
        return task

    def forward(self, step: dict[str, Any]) -> LossOutput:
        assert self.module is not None, "call setup() first"
        with self.autocast():
            out = self.module(step)
        return out

    def backward(self, loss: torch.Tensor) -> None:
        loss = loss / self._accum if self._accum > 1 else loss
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def step(self, boundary: bool) -> dict[str, float]:
        if not boundary:
            return {}
        assert self.optimizer is not None and self.task is not None
        stats: dict[str, float] = {}
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        clip = self.train_config.grad_clip
        if clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, clip))
        stats["lr"] = self.lr
        stepped = True
        if self.scaler is not None:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            stats["loss_scale"] = scale
            # inf/NaN gradients: the scaler skipped the update and lowered the scale; the
            # schedule waits for a step that is taken (as Hugging Face's Trainer does)
            stepped = self.scaler.get_scale() >= scale
        else:
            self.optimizer.step()
        if stepped:
            self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    @property
    def lr(self) -> float:
        assert self.optimizer is not None
        return float(self.optimizer.param_groups[0]["lr"])

    def save_state(self, directory: Path) -> None:
        if not self.is_main:
            return
        assert self.optimizer is not None
        state = {"optimizer": self.optimizer.state_dict(),
                 "schedule": self.schedule.state_dict(),
                 "scaler": self.scaler.state_dict() if self.scaler is not None else None}
        save_state(state, directory, "engine")

    def load_state(self, directory: Path) -> None:
        assert self.optimizer is not None
        state = load_state(directory, "engine")

        def load() -> None:
            assert self.optimizer is not None
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])

        load_keeping_settings(self.optimizer, self.schedule, load)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        assert self.task is not None
        if not self.is_main:
            return None
        return {k: v.detach().cpu() for k, v in self.task.state_dict().items()}


class DDPEngine(SingleEngine):
    """The task wrapped in DistributedDataParallel: gradients averaged over ranks."""

    name = "ddp"

    def _wrap(self, task: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        if not self.dist.distributed:
            return task  # one process: DDP would only add overhead
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(
            task, device_ids=ids, find_unused_parameters=self.config.find_unused_parameters,
            bucket_cap_mb=self.config.bucket_cap_mb, static_graph=self.config.static_graph)

    def accumulate(self, boundary: bool) -> contextlib.AbstractContextManager[None]:
        no_sync = getattr(self.module, "no_sync", None)
        if boundary or no_sync is None:
            return contextlib.nullcontext()
        return no_sync()
