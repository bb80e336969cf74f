"""A third-party engine: torch FSDP2 (``torch.distributed.fsdp.fully_shard``).

It plugs in exactly like the built-in ``single``/``ddp``/``deepspeed`` engines: a subclass of
:class:`alp_train.engines.torch_engines.SingleEngine` registered through the ``alp_engines``
hook (see :mod:`alp_plugin_example.plugin`).

With ``train.nproc > 1`` every block of each ``nn.ModuleList`` of the task (the encoder
layers) becomes an FSDP unit, then the whole task; parameters, gradients and optimizer state
live as DTensor shards, one slice per rank. Gradients are reduce-scattered (averaged) over
the ranks, so the steps equal one process over the global batch. With one process nothing is
sharded and the engine is :class:`SingleEngine`.

Refused while sharded: ``train.precision=fp16`` (no sharded loss scaler here: use bf16),
gradient caching (``train.grad_cache``) and ScaledAdam (its parameter-scale updates would
see only a shard).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alp_core import ConfigError
from alp_train.engines.base import BuildOptimizer, BuildSchedule, load_keeping_settings
from alp_train.engines.torch_engines import SingleEngine
from alp_train.state_io import load_state, save_state

__all__ = ["FSDP2Engine"]

WEIGHTS = "model.safetensors"  # what the Checkpointer writes from full_state_dict()


class FSDP2Engine(SingleEngine):
    """The task sharded with FSDP2 across ``train.nproc`` processes (gloo on CPU, NCCL on GPU)."""

    name = "fsdp2"

    @classmethod
    def check_config(cls, config: Any, run: Any, nproc: int) -> None:
        """What sharding rules out, refused by ``alp run``/``--check`` before any process
        starts (alp-train calls this hook of every engine)."""
        if nproc < 2:
            return
        if run.train.precision == "fp16":
            raise ConfigError("train.engine: fsdp2 has no sharded fp16 loss scaler; "
                              "use train.precision=bf16 (or fp32)")
        if run.train.grad_cache.chunk_size:
            raise ConfigError("train.grad_cache: not supported with the fsdp2 engine (the "
                              "cached embedding pass runs sub-modules outside the root "
                              "FSDP unit); use single or ddp")
        if run.train.optimizer.get("name") == "scaled-adam":
            raise ConfigError("train.optimizer: scaled-adam scales updates by whole-parameter "
                              "RMS, but fsdp2 gives it shards; use adamw")

    def __init__(self, config: Any, train: Any, dist: Any) -> None:
        super().__init__(config, train, dist)
        self.sharded = dist.world_size > 1
        # sharded: load_state() restores the weights itself (a plain load_state_dict of full
        # tensors into DTensor parameters would fail)
        self.owns_weights = self.sharded

    # -- training ------------------------------------------------------------------------
    def setup(self, task: nn.Module, build_optimizer: BuildOptimizer,
              build_schedule: BuildSchedule) -> None:
        """Shard ``task`` (when several processes run), then build optimizer and schedule.

        The optimizer is built after sharding, so it holds (and its state mirrors) the
        DTensor shards: each rank keeps 1/world_size of the Adam moments.
        """
        task = task.to(self.device)
        if self.sharded:
            self._shard(task)
        super().setup(task, build_optimizer, build_schedule)

    def _shard(self, task: nn.Module) -> None:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        reshard = self.config.reshard_after_forward
        if self.config.shard_module_lists:
            blocks = [block for module in task.modules() if isinstance(module, nn.ModuleList)
                      for block in module if any(True for _ in block.parameters())]
            # FSDP2 wraps bottom-up: a block holding other blocks (a Zipformer stack of
            # layers) after the blocks inside it, which modules() lists later
            depth = {id(m): name.count(".") for name, m in task.named_modules()}
            for block in sorted(blocks, key=lambda b: -depth[id(b)]):
                fully_shard(block, mesh=mesh, reshard_after_forward=reshard)
        # the root unit takes every parameter not in a block (embeddings, projections, the
        # objective's temperature); the root never reshards after forward: backward needs it
        fully_shard(task, mesh=mesh, reshard_after_forward=reshard)

    def accumulate(self, boundary: bool) -> contextlib.AbstractContextManager[None]:
        """Off an accumulation boundary, keep the unsharded gradients (no reduce-scatter)."""
        if self.sharded and self.task is not None:
            self.task.set_requires_gradient_sync(boundary)  # type: ignore[operator]
        return contextlib.nullcontext()

    def step(self, boundary: bool) -> dict[str, float]:
        """Clip by the global norm over all shards, step, schedule (at a boundary)."""
        if not self.sharded:  # one process: the single engine's step (its fp16 loss scaler)
            return super().step(boundary)
        if not boundary:
            return {}
        assert self.optimizer is not None
        stats: dict[str, float] = {}
        clip = self.train_config.grad_clip
        if clip:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
            full = getattr(norm, "full_tensor", None)  # a DTensor when sharded
            stats["grad_norm"] = float(full() if full is not None else norm)
        stats["lr"] = self.lr
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        return stats

    # -- state -----------------------------------------------------------------------------
    def _options(self) -> Any:
        from torch.distributed.checkpoint.state_dict import StateDictOptions

        return StateDictOptions(full_state_dict=True, cpu_offload=True)

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """The whole task's weights, gathered from the shards to rank 0 (collective)."""
        if not self.sharded:
            return super().full_state_dict()
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        assert self.task is not None
        state = get_model_state_dict(self.task, options=self._options())
        if not self.is_main:
            return None
        return {k: v.detach().cpu() for k, v in state.items()}

    def save_state(self, directory: Path) -> None:
        """Gather the optimizer state to rank 0 (full tensors by parameter name) and write it
        with the schedule as ``engine.{json,safetensors}``: a checkpoint is independent of
        the number of ranks' shards and holds plain tensors only."""
        if not self.sharded:
            super().save_state(directory)
            return
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        assert self.task is not None and self.optimizer is not None
        optimizer = get_optimizer_state_dict(self.task, self.optimizer, options=self._options())
        if self.is_main:
            save_state({"optimizer": optimizer, "schedule": self.schedule.state_dict(),
                        "scaler": None, "fsdp2": True}, directory, "engine")

    def load_state(self, directory: Path) -> None:
        """Restore weights and optimizer state: every rank reads the full tensors and keeps
        its own shards (the checkpoint folder must be visible to every rank)."""
        if not self.sharded:
            super().load_state(directory)
            return
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        assert self.task is not None and self.optimizer is not None
        state = load_state(directory, "engine")
        if not state.get("fsdp2"):
            raise RuntimeError(f"{directory} was not written by the fsdp2 engine with several "
                               "processes; resume it with the engine that wrote it")
        weights = Path(directory) / WEIGHTS
        if not weights.is_file():
            raise RuntimeError(f"{weights} is missing: fsdp2 restores the weights from it")
        options = self._options()
        set_model_state_dict(self.task, load_file(str(weights)), options=options)

        def load() -> None:
            assert self.task is not None and self.optimizer is not None
            set_optimizer_state_dict(self.task, self.optimizer, state["optimizer"],
                                     options=options)
            self.schedule.load_state_dict(state["schedule"])

        # the moments and the schedule's position from the checkpoint, the rates and the
        # schedule's settings from the resumed run's config (as the built-in engines do)
        load_keeping_settings(self.optimizer, self.schedule, load)
