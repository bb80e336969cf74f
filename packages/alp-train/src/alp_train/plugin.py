"""Registers alp-train's engines, optimizers and schedules through the ALP hooks (no torch)."""

from __future__ import annotations

from alp_core import EngineRecord, LRScheduleRecord, OptimizerRecord, hookimpl
from alp_train.engines.configs import (
    DDPEngineConfig,
    DeepSpeedEngineConfig,
    SingleEngineConfig,
)
from alp_train.optim.configs import (
    AdamWConfig,
    ConstantConfig,
    EdenConfig,
    ScaledAdamConfig,
    WarmupCosineConfig,
)

_SCHED = "alp_train.optim.schedules"


@hookimpl
def alp_engines() -> list[EngineRecord]:
    return [
        EngineRecord("single", SingleEngineConfig,
                     "alp_train.engines.torch_engines:SingleEngine", "one process, one device"),
        EngineRecord("ddp", DDPEngineConfig, "alp_train.engines.torch_engines:DDPEngine",
                     "torch DistributedDataParallel (gloo on CPU, NCCL on GPU)"),
        EngineRecord("deepspeed", DeepSpeedEngineConfig,
                     "alp_train.engines.deepspeed_engine:DeepSpeedZeroEngine",
                     "DeepSpeed ZeRO 1-3, offload, bf16/fp16 (extra: alp-train[deepspeed])"),
    ]


@hookimpl
def alp_optimizers() -> list[OptimizerRecord]:
    return [
        OptimizerRecord("adamw", AdamWConfig, f"{_SCHED}:build_adamw",
                        "torch AdamW, no decay on biases/norms/scalars"),
        OptimizerRecord("scaled-adam", ScaledAdamConfig, f"{_SCHED}:build_scaled_adam",
                        "ScaledAdam (Zipformer): parameter-scale-relative Adam updates"),
    ]


@hookimpl
def alp_lr_schedules() -> list[LRScheduleRecord]:
    return [
        LRScheduleRecord("warmup-cosine", WarmupCosineConfig, f"{_SCHED}:build_warmup_cosine",
                         "linear warm-up, cosine decay to zero"),
        LRScheduleRecord("constant", ConstantConfig, f"{_SCHED}:build_constant",
                         "constant after an optional linear warm-up"),
        LRScheduleRecord("eden", EdenConfig, f"{_SCHED}:build_eden",
                         "Eden (Zipformer): decay by steps and epochs after a warm-up"),
    ]
