"""Optimiser and learning-rate schedule shared by the engines."""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(
    modules: dict[str, nn.Module], lr: float, weight_decay: float,
    lrs: dict[str, float] | None = None,
) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and scalars; per-module learning rates."""
    groups = []
    for name, module in modules.items():
        decay, no_decay = [], []
        for pname, p in module.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim < 2 or "norm" in pname.lower() else decay).append(p)
        group_lr = (lrs or {}).get(name, lr)
        if decay:
            groups.append({"params": decay, "weight_decay": weight_decay, "lr": group_lr,
                           "name": f"{name}.decay"})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0, "lr": group_lr,
                           "name": f"{name}.no_decay"})
    return groups


def warmup_cosine(total_steps: int, warmup_steps: int):
    """Linear warm-up to the peak, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_optimizer(
    modules: dict[str, nn.Module], lr: float, weight_decay: float, total_steps: int,
    warmup_fraction: float, lrs: dict[str, float] | None = None,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    opt = torch.optim.AdamW(param_groups(modules, lr, weight_decay, lrs), lr=lr)
    warmup = int(round(total_steps * warmup_fraction))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, warmup))
