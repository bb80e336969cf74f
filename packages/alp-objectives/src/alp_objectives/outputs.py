"""What every objective returns: the loss to minimise and detached metrics to log."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossOutput:
    """``loss`` is a scalar with gradient; ``metrics`` are plain floats for logging."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
