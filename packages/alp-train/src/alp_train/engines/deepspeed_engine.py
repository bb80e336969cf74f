"""DeepSpeed's own engine (ZeRO stage 1, 2 or 3) behind ALP's :class:`Engine` interface.

The DeepSpeed config is built from the run config (micro-batch, accumulation, clipping,
precision, ZeRO stage and offload); a user's own DeepSpeed JSON may add anything else, and a
key it sets differently from the run config is an error before any work. DeepSpeed is an
optional extra (``pip install alp-train[deepspeed]``), imported only when this engine is built.

``train.precision`` bf16 / fp16 runs DeepSpeed's ``torch_autocast`` mode: float32 weights
and ``torch.autocast`` around the forward, as the ``single`` and ``ddp`` engines do (fp16
with DeepSpeed's own gradient scaler), and gradients reduced in float32 unless the user's JSON
names ``torch_autocast.lower_precision_safe_modules``. DeepSpeed's ``bf16`` / ``fp16``
sections are not used: they cast the weights to half precision and leave the float32
features to meet them, which fails in the first layer.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alp_core import ConfigError
from alp_objectives.outputs import LossOutput
from alp_train.engines.base import BuildOptimizer, BuildSchedule, Engine
from alp_train.engines.configs import DeepSpeedEngineConfig

__all__ = ["DeepSpeedEngineConfig", "DeepSpeedZeroEngine", "build_deepspeed_config"]

DS_TAG = "zero"


def _import_deepspeed() -> Any:
    try:
        import deepspeed
    except ImportError as err:
        raise ConfigError(
            "train.engine: 'deepspeed' needs the DeepSpeed package, which is not installed "
            f"({err}); install the extra: pip install 'alp-train[deepspeed]'") from None
    return deepspeed


def build_deepspeed_config(config: DeepSpeedEngineConfig, train: Any, micro_batch: int,
                           world_size: int) -> dict[str, Any]:
    """The DeepSpeed JSON of a run: ours, with the user's file merged in (conflicts raise)."""
    if config.offload_params and config.zero_stage != 3:
        raise ConfigError("train.engine.offload_params: parameter offload needs zero_stage 3 "
                          f"(got {config.zero_stage})")
    zero: dict[str, Any] = {"stage": config.zero_stage, "overlap_comm": config.overlap_comm,
                            "contiguous_gradients": config.contiguous_gradients}
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if config.offload_params:
        zero["offload_param"] = {"device": "cpu"}
    if config.memory_efficient_linear is not None:
        if config.zero_stage != 3:
            raise ConfigError("train.engine.memory_efficient_linear is a ZeRO stage 3 option "
                              f"(zero_stage is {config.zero_stage})")
        zero["memory_efficient_linear"] = config.memory_efficient_linear
    ours: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": int(train.grad_accum_steps),
        "train_batch_size": micro_batch * int(train.grad_accum_steps) * world_size,
        "gradient_clipping": float(train.grad_clip or 0.0),
        "zero_optimization": zero,
        "torch_autocast": {"enabled": train.precision != "fp32",
                           "dtype": "float16" if train.precision == "fp16" else "bfloat16"},
        # our optimizer runs on the offloaded fp32 partitions (no DeepSpeedCPUAdam build needed)
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if not config.config_file:
        return _reduce_in_float32(ours)
    path = Path(config.config_file)
    try:
        user = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"train.engine.config_file: cannot read {path} as JSON: {err}") from None
    if not isinstance(user, dict):
        raise ConfigError(f"train.engine.config_file: {path} must hold a JSON object")
    if "optimizer" in user or "scheduler" in user:
        raise ConfigError(f"{path}: 'optimizer'/'scheduler' are chosen by train.optimizer and "
                          "train.schedule in the run config; remove them from the DeepSpeed JSON")
    for half in ("bf16", "fp16"):
        section = user.get(half)
        if isinstance(section, dict) and section.get("enabled") not in (None, False, "auto"):
            raise ConfigError(
                f"{path}: {half}.enabled: ALP runs mixed precision through DeepSpeed's "
                "torch_autocast (float32 weights, autocast in the forward, as the other "
                f"engines); set train.precision={half} in the run config and leave DeepSpeed's "
                f"'{half}' section out")
    return _reduce_in_float32(_merge(ours, user, str(path)))


def _reduce_in_float32(config: dict[str, Any]) -> dict[str, Any]:
    """Gradients reduced in float32 (DeepSpeed's default reduces those of Linear and Conv
    layers in the autocast dtype) unless the user's JSON chose the modules."""
    autocast = config.get("torch_autocast")
    if isinstance(autocast, dict) and autocast.get("enabled"):
        autocast.setdefault("lower_precision_safe_modules", [])
    return config


def _merge(ours: dict[str, Any], user: dict[str, Any], where: str, prefix: str = ""
           ) -> dict[str, Any]:
    out = dict(ours)
    for key, value in user.items():
        name = f"{prefix}{key}"
        if key not in ours or value == "auto":
            out[key] = ours.get(key, value) if value == "auto" else value
        elif isinstance(value, dict) and isinstance(ours[key], dict):
            out[key] = _merge(ours[key], value, where, name + ".")
        elif value != ours[key]:
            raise ConfigError(
                f"{where}: {name} = {value!r} conflicts with the run config, which gives "
                f"{ours[key]!r} (set it in the run config: train.grad_accum_steps, "
                "train.grad_clip, train.precision, data.batch_size, train.engine.*)")
    return out


def _single_process_rendezvous() -> dict[str, str | None]:
    """The env:// facts DeepSpeed's process group needs, for one process that no launcher
    started (``train.nproc=1``: one GPU with ZeRO-Offload, say); set only where missing.
    Returns the previous values, to restore once DeepSpeed has started."""
    import socket

    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    saved = {key: os.environ.get(key) for key in keys}
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                       ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    return saved


class DeepSpeedZeroEngine(Engine):
    """``deepspeed.initialize`` on the task, with our optimizer and schedule as client objects."""

    name = "deepspeed"
    owns_weights = True

    @classmethod
    def check_config(cls, config: Any, run: Any, nproc: int) -> None:
        _import_deepspeed()
        build_deepspeed_config(config, run.train, run.data.batch_size, nproc)
        if run.train.grad_cache.chunk_size:
            raise ConfigError("train.grad_cache: not supported with the deepspeed engine yet "
                              "(DeepSpeed reduces gradients inside each backward); use "
                              "train.engine.name=single or ddp")
        optimizer = run.train.optimizer.get("name", "adamw")
        if optimizer == "scaled-adam":  # it scales each update by its parameter's own RMS
            raise ConfigError("train.optimizer: scaled-adam needs each parameter whole, but "
                              "DeepSpeed's ZeRO hands the optimizer flat partitions of every "
                              "group (one RMS per group, scalars merged into tensors); use "
                              "train.engine.name=single or ddp with scaled-adam, or adamw "
                              "with deepspeed")

    def __init__(self, config: DeepSpeedEngineConfig, train: Any, dist: Any,
                 micro_batch: int = 1) -> None:
        super().__init__(config, train, dist)
        self.deepspeed = _import_deepspeed()
        self.micro_batch = micro_batch
        self.ds_config = build_deepspeed_config(config, train, micro_batch, dist.world_size)
        self.module: Any = None

    def setup(self, task: nn.Module, build_optimizer: BuildOptimizer,
              build_schedule: BuildSchedule) -> None:
        optimizer = build_optimizer(self._place(task))
        saved = _single_process_rendezvous() if not self.dist.distributed else {}
        try:
            self._initialize(optimizer, build_schedule)
        finally:  # the env:// facts were for DeepSpeed's start only (launched_by_torchrun
            for key, value in saved.items():  # reads them), except LOCAL_RANK, which ZeRO-3
                if key == "LOCAL_RANK":  # reads again at every forward
                    continue
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def _initialize(self, optimizer: Any, build_schedule: BuildSchedule) -> None:
        self.deepspeed.init_distributed(
            dist_backend="nccl" if self.device.type == "cuda" else "gloo",
            auto_mpi_discovery=False, verbose=False)
        self.module, self.optimizer, _, self.schedule = self.deepspeed.initialize(
            model=self.task, optimizer=optimizer, lr_scheduler=build_schedule,
            config=self.ds_config)

    def forward(self, step: dict[str, Any]) -> LossOutput:
        return self.module(step)

    def backward(self, loss: torch.Tensor) -> None:
        self.module.backward(loss)

    def step(self, boundary: bool) -> dict[str, float]:
        at_boundary = bool(self.module.is_gradient_accumulation_boundary())
        lr = self.lr
        self.module.step()  # DeepSpeed counts micro-steps and steps at its own boundary
        if not at_boundary:
            return {}
        stats = {"lr": lr}
        norm = self.module.get_global_grad_norm()
        if norm is not None:
            stats["grad_norm"] = float(norm)
        return stats

    @property
    def lr(self) -> float:
        return float(self.module.get_lr()[0])

    def save_state(self, directory: Path) -> None:
        self.module.save_checkpoint(str(directory / "deepspeed"), tag=DS_TAG, save_latest=False)

    def load_state(self, directory: Path) -> None:
        from alp_train.engines.base import load_keeping_settings

        def load() -> None:
            path, _ = self.module.load_checkpoint(str(directory / "deepspeed"), tag=DS_TAG)
            if path is None:
                raise FileNotFoundError(
                    f"no DeepSpeed checkpoint under {directory / 'deepspeed'}")

        load_keeping_settings(self.module.optimizer, self.schedule, load)

    def state_memory_mb(self) -> dict[str, float]:
        """This rank's share: ZeRO-3 parameter partitions (``ds_tensor``), and the inner
        optimizer's state plus its fp32 master partitions (stages 1-3)."""
        from alp_train.engines.base import optimizer_state_bytes

        assert self.task is not None
        params = sum((p.ds_tensor if hasattr(p, "ds_tensor") else p).numel() * p.element_size()
                     for p in self.task.parameters())
        zero = self.module.optimizer
        inner = getattr(zero, "optimizer", zero)
        masters = 0
        for name in ("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat"):
            for t in getattr(zero, name, None) or []:
                masters += t.numel() * t.element_size()
        return {"params_mb": params / 2**20,
                "optimizer_mb": (optimizer_state_bytes(inner) + masters) / 2**20}

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        assert self.task is not None
        params = list(self.task.parameters())
        with self.deepspeed.zero.GatheredParameters(params, modifier_rank=None,
                                                    enabled=self.config.zero_stage == 3):
            if not self.is_main:
                return None
            return {k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu().clone()
                    for k, v in self.task.state_dict().items()}
