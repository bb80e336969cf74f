"""Zipformer's elementwise building blocks: SwooshR/SwooshL, BiasNorm, the learned bypass.

Also the small sequence helpers every Zipformer module shares (channel padding, replicating
each clip's last valid frame over its padding) that make the encoder padding-exact.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_models.pooling import length_mask

__all__ = [
    "BiasNorm",
    "Bypass",
    "SwooshL",
    "SwooshR",
    "convert_channels",
    "repeat_last_valid",
    "scaled_linear",
    "swoosh_l",
    "swoosh_r",
]


def swoosh_r(x: Tensor) -> Tensor:
    """SwooshR(x) = log(1 + exp(x - 1)) - 0.08 x - 0.313261687 (zero at x = 0)."""
    return F.softplus(x - 1.0) - 0.08 * x - 0.313261687


def swoosh_l(x: Tensor) -> Tensor:
    """SwooshL(x) = log(1 + exp(x - 4)) - 0.08 x - 0.035 (about zero at x = 0)."""
    return F.softplus(x - 4.0) - 0.08 * x - 0.035


class SwooshR(nn.Module):
    """Module form of :func:`swoosh_r` (used after convolutions)."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh_r(x)


class SwooshL(nn.Module):
    """Module form of :func:`swoosh_l` (used in the feed-forward modules)."""

    def forward(self, x: Tensor) -> Tensor:
        return swoosh_l(x)


class BiasNorm(nn.Module):
    """BiasNorm(x) = x / RMS(x - b) * exp(gamma) over the last dim.

    Replaces LayerNorm: the learned bias ``b`` enters only the scale, so a large constant
    channel cannot defeat the normalisation; one learned scalar log-scale ``gamma``.
    """

    def __init__(self, num_channels: int, log_scale: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        # shape (1,), not 0-dim: DeepSpeed broadcasts parameters as byte views, which a
        # 0-dim tensor cannot give
        self.log_scale = nn.Parameter(torch.tensor([float(log_scale)]))
        self.bias = nn.Parameter(torch.empty(num_channels).normal_(mean=0.0, std=1e-4))
        self.eps = eps

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        scale = state_dict.get(prefix + "log_scale")
        if isinstance(scale, Tensor) and scale.dim() == 0:  # saved before it was (1,)
            state_dict[prefix + "log_scale"] = scale.reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        mean_square = (x - self.bias).pow(2).mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(mean_square + self.eps) * self.log_scale.exp()


class Bypass(nn.Module):
    """out = orig + (new - orig) * c with a learned per-channel scale c in [min, max].

    The limits keep every layer contributing (c >= min) and stop it from overshooting
    (c <= 1); icefall starts the lower limit at 0.9 and anneals it, here it is fixed.
    """

    def __init__(self, dim: int, scale_min: float = 0.2, scale_max: float = 1.0) -> None:
        super().__init__()
        self.bypass_scale = nn.Parameter(torch.full((dim,), 0.5))
        self.scale_min, self.scale_max = scale_min, scale_max

    def forward(self, orig: Tensor, new: Tensor) -> Tensor:
        scale = self.bypass_scale.clamp(self.scale_min, self.scale_max)
        return orig + (new - orig) * scale


def scaled_linear(in_dim: int, out_dim: int, scale: float, bias: bool = True) -> nn.Linear:
    """An ``nn.Linear`` with its default init multiplied by ``scale`` (bias in ±0.1·scale).

    Zipformer starts most residual branches small so that the untrained stack is close to
    the identity; this is only an initialisation, the layer is a plain ``nn.Linear``.
    """
    layer = nn.Linear(in_dim, out_dim, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(scale)
        if layer.bias is not None:
            layer.bias.uniform_(-0.1 * scale, 0.1 * scale)
    return layer


def convert_channels(x: Tensor, channels: int) -> Tensor:
    """Truncate or zero-pad the last dim of ``x`` to ``channels`` (stacks differ in width)."""
    have = x.shape[-1]
    if channels <= have:
        return x[..., :channels]
    return F.pad(x, (0, channels - have))


def repeat_last_valid(x: Tensor, lengths: Tensor) -> Tensor:
    """(B, T, C): positions at or past each clip's length take its last valid frame.

    A clip alone is padded to a multiple of the downsampling factor by repeating its last
    frame; doing the same inside a batch makes downsampling independent of batch padding.
    """
    b, t, c = x.shape
    last = (lengths.to(x.device).clamp(min=1, max=t) - 1).view(b, 1, 1).expand(b, 1, c)
    valid = length_mask(lengths, t).unsqueeze(-1)
    return torch.where(valid, x, torch.gather(x, 1, last))
