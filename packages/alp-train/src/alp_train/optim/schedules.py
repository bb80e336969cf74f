"""Optimizer and schedule factories registered by name (``train.optimizer``/``train.schedule``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from alp_train.optim.configs import AdamWConfig, ConstantConfig, WarmupCosineConfig

__all__ = ["build_adamw", "build_constant", "build_warmup_cosine", "warmup_cosine"]


def build_adamw(config: AdamWConfig, param_groups: list[dict[str, Any]], lr: float
                ) -> torch.optim.Optimizer:
    """AdamW over the groups; groups marked ``no_decay`` get no weight decay."""
    groups = [{**g, "weight_decay": 0.0 if g.get("no_decay") else config.weight_decay}
              for g in param_groups]
    kwargs: dict[str, Any] = {"betas": tuple(config.betas), "eps": config.eps}
    if config.fused is not None:
        kwargs["fused"] = config.fused
    return torch.optim.AdamW(groups, lr=lr, **kwargs)


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Factor of the peak rate: linear warm-up, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Factor:
    """A picklable LambdaLR factor (a closure would not survive the optimizer's state_dict)."""

    def __init__(self, kind: str, total: int, warmup: int) -> None:
        self.kind, self.total, self.warmup = kind, total, warmup

    def __call__(self, step: int) -> float:
        if self.kind == "cosine":
            return warmup_cosine(self.total, self.warmup)(step)
        return min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0


def build_warmup_cosine(config: WarmupCosineConfig, optimizer: torch.optim.Optimizer,
                        total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(round(total_steps * config.warmup_fraction))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _Factor("cosine", max(total_steps, 1), warmup))


def build_constant(config: ConstantConfig, optimizer: torch.optim.Optimizer
                   ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _Factor("constant", 0, config.warmup_steps))


def build_scaled_adam(config: Any, param_groups: list[dict[str, Any]], lr: float
                      ) -> torch.optim.Optimizer:
    """ScaledAdam (Zipformer) over the groups; its size-relative updates need no weight decay,
    so the decay / no-decay split is undone: groups of one rate become one group, as in
    icefall (its gradient clipping takes one factor per group, from the group's whole norm)."""
    from alp_train.optim.scaled_adam import ScaledAdam

    merged: dict[float, dict[str, Any]] = {}
    for group in param_groups:
        rate = group.get("lr", lr)
        into = merged.setdefault(rate, {"params": [], "lr": rate, "names": []})
        into["params"].extend(group["params"])
        into["names"].append(group.get("name", f"group{len(into['names'])}"))
    groups = [{"params": g["params"], "lr": g["lr"], "name": "+".join(g["names"])}
              for g in merged.values()]
    return ScaledAdam(groups, lr=lr, betas=tuple(config.betas), eps=config.eps,
                      clipping_scale=config.clipping_scale,
                      scalar_lr_scale=config.scalar_lr_scale,
                      param_min_rms=config.param_min_rms, param_max_rms=config.param_max_rms)


def build_eden(config: Any, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """Eden, stepped per optimizer step; the fractional epoch comes from ``steps_per_epoch``."""
    from alp_train.optim.eden import Eden

    return Eden(optimizer, lr_batches=config.lr_batches, lr_epochs=config.lr_epochs,
                warmup_batches=config.warmup_batches, warmup_start=config.warmup_start,
                steps_per_epoch=steps_per_epoch)
