"""Length masks and masked pooling over padded frame sequences."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["length_mask", "masked_mean"]


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
