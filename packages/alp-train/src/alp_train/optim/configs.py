"""Configs of the built-in optimizers and schedules (pydantic only: registering is cheap)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from alp_core import ComponentConfig


def _betas(value: tuple[float, float]) -> tuple[float, float]:
    if not all(0.0 <= b < 1.0 for b in value):
        raise ValueError(f"each beta must be in [0, 1), got {list(value)}")
    return value

__all__ = ["AdamWConfig", "ConstantConfig", "EdenConfig", "ScaledAdamConfig",
           "WarmupCosineConfig"]


class AdamWConfig(ComponentConfig):
    """torch.optim.AdamW; no weight decay on biases, norms and scalars."""

    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    fused: bool | None = Field(None, description="torch's fused kernel (GPU); None: torch decides")

    _check_betas = field_validator("betas")(_betas)


class ScaledAdamConfig(ComponentConfig):
    """ScaledAdam (Zipformer): updates scaled by each parameter's RMS (the study: lr 0.045)."""

    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-8, gt=0)
    clipping_scale: float | None = Field(2.0, gt=0)
    scalar_lr_scale: float = Field(0.1, gt=0)
    param_min_rms: float = Field(1e-5, gt=0)
    param_max_rms: float = Field(3.0, gt=0)

    _check_betas = field_validator("betas")(_betas)

    @model_validator(mode="after")
    def _rms_range(self) -> ScaledAdamConfig:
        if self.param_min_rms >= self.param_max_rms:
            raise ValueError(f"param_min_rms ({self.param_min_rms}) must be below "
                             f"param_max_rms ({self.param_max_rms})")
        return self


class WarmupCosineConfig(ComponentConfig):
    """Linear warm-up over ``warmup_fraction`` of the steps, then cosine decay to zero."""

    warmup_fraction: float = Field(0.05, ge=0, lt=1)


class ConstantConfig(ComponentConfig):
    """A constant learning rate after an optional linear warm-up."""

    warmup_steps: int = Field(0, ge=0)


class EdenConfig(ComponentConfig):
    """Eden (Zipformer): decay by steps and epochs, ``warmup_batches`` of linear warm-up."""

    lr_batches: float = Field(7500, gt=0)
    lr_epochs: float = Field(3.5, gt=0)
    warmup_batches: float = Field(500, ge=0)
    warmup_start: float = Field(0.5, ge=0, le=1)
