"""Configs of the example components (pydantic only: registration imports no torch)."""

from __future__ import annotations

from pydantic import Field

from alp_core import ComponentConfig


class Conv1dEncoderConfig(ComponentConfig):
    input_dim: int = 80
    channels: int = Field(128, ge=1)
    num_layers: int = Field(3, ge=1, le=8)
    kernel_size: int = Field(5, ge=1)


class MarginRankingConfig(ComponentConfig):
    margin: float = Field(0.2, gt=0)


class KNNProbeConfig(ComponentConfig):
    k: int = Field(5, ge=1)
    tasks: list[str] | None = None


class FSDP2EngineConfig(ComponentConfig):
    """torch FSDP2 (``fully_shard``): parameters, gradients and optimizer state sharded."""

    reshard_after_forward: bool = Field(
        True, description="free the gathered parameters after each forward (ZeRO-3-like); "
        "False keeps them until backward (ZeRO-2-like: more memory, less communication)")
    shard_module_lists: bool = Field(
        True, description="shard each block of every nn.ModuleList (encoder layers) as its own "
        "unit before the whole task; False: one unit, the task")
