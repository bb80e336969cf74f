"""Length masks and masked pooling over padded frame sequences."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["AttentionPooler", "ClsPooler", "MeanPooler", "build_pooler", "length_mask",
           "masked_mean"]


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """Boolean (B, max_len) mask, True at the first ``lengths[b]`` positions of each row."""
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.to(positions.device).unsqueeze(1)


def masked_mean(frames: Tensor, lengths: Tensor) -> Tensor:
    """Mean of the valid frames of each row: (B, T, D) + (B,) → (B, D).

    Padded frames are excluded (whatever they hold); a row of length 0 pools to zeros.
    """
    if frames.dim() != 3:
        raise ValueError(f"masked_mean expects frames (B, T, D), got {tuple(frames.shape)}")
    mask = length_mask(lengths, frames.shape[1]).unsqueeze(-1)
    summed = frames.masked_fill(~mask, 0.0).sum(dim=1)
    counts = lengths.clamp(min=1).to(summed.dtype).unsqueeze(-1)
    return summed / counts


class MeanPooler(nn.Module):
    """Masked mean over the valid frames (the paper's pooling of the projected frames)."""

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return masked_mean(frames, lengths)


class ClsPooler(nn.Module):
    """The first frame of each clip (for encoders that put a summary token first)."""

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        if frames.dim() != 3:
            raise ValueError(f"ClsPooler expects frames (B, T, D), got {tuple(frames.shape)}")
        return frames[:, 0] * (lengths > 0).to(frames.dtype).unsqueeze(-1)


class AttentionPooler(nn.Module):
    """Multi-head attention pooling: ``num_queries`` learned queries attend to the valid
    frames; the query outputs are averaged (the study's second probe pooling)."""

    def __init__(self, dim: int, num_heads: int = 4, num_queries: int = 1) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention pooling: dim ({dim}) must be divisible by num_heads "
                             f"({num_heads})")
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        self.attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        if frames.dim() != 3:
            raise ValueError(f"AttentionPooler expects (B, T, D), got {tuple(frames.shape)}")
        b = frames.shape[0]
        empty = lengths == 0
        # a clip without frames may attend to its (zero) padding rather than to nothing (NaN)
        ignore = ~length_mask(lengths, frames.shape[1]) & ~empty.unsqueeze(1)
        queries = self.queries.unsqueeze(0).expand(b, -1, -1)
        out, _ = self.attn(queries, frames, frames, key_padding_mask=ignore,
                           need_weights=False)
        return out.mean(dim=1) * (~empty).to(out.dtype).unsqueeze(-1)


def build_pooler(config: Any, dim: int) -> nn.Module:
    """The pooler named by ``config.name`` (``mean``, ``attention``, ``cls``) over ``dim``."""
    if config.name == "mean":
        return MeanPooler()
    if config.name == "cls":
        return ClsPooler()
    return AttentionPooler(dim, config.num_heads, config.num_queries)
