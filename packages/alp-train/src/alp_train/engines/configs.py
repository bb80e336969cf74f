"""Configs of the built-in engines (pydantic only, so registering them never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from alp_core import ComponentConfig

__all__ = ["DDPEngineConfig", "DeepSpeedEngineConfig", "SingleEngineConfig"]


class SingleEngineConfig(ComponentConfig):
    """One process on one device (``train.device``)."""


class DDPEngineConfig(ComponentConfig):
    """torch DistributedDataParallel over ``train.nproc`` processes (gloo on CPU, NCCL on GPU)."""

    find_unused_parameters: bool = Field(
        False, description="let DDP tolerate parameters that get no gradient in a step")
    bucket_cap_mb: float = Field(25.0, gt=0, description="gradient all-reduce bucket size")
    static_graph: bool = False


class DeepSpeedEngineConfig(ComponentConfig):
    """DeepSpeed ZeRO options; ``config_file`` (a DeepSpeed JSON) is merged in."""

    zero_stage: Literal[0, 1, 2, 3] = Field(2, description="ZeRO stage (0: plain data parallel)")
    offload_optimizer: bool = Field(False, description="optimizer states in CPU memory")
    offload_params: bool = Field(False, description="parameters in CPU memory (stage 3 only)")
    config_file: str | None = Field(None, description="a DeepSpeed JSON to merge in")
    overlap_comm: bool = False
    contiguous_gradients: bool = True
    memory_efficient_linear: bool | None = Field(
        None, description="stage 3: DeepSpeed's linear that re-gathers the weight in the "
        "backward instead of keeping it (true is DeepSpeed's default; it replaces "
        "torch.nn.functional.linear process-wide). Under bf16/fp16 it rounds the bias add "
        "separately for inputs of 3+ dims, so steps differ from DDP's within half-precision "
        "rounding; false: torch's linear, DDP's numbers, the autocast weight copies kept "
        "for the backward. None: whatever config_file or DeepSpeed says")
    gather_on_save: bool = Field(
        True, description="also write the gathered model.safetensors into each checkpoint "
        "(False: shards only; `alp export` converts them)")
