"""Gathering features across ranks with gradient, for losses over the global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank's copy back to its owner."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(out, tensor.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads).contiguous()
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (B, ...) from every rank along dim 0, differentiably.

    Every rank must pass the same shape. Without torch.distributed it returns ``tensor``.
    """
    _, world = world_info()
    if world == 1:
        return tensor
    return torch.cat(_GatherWithGrad.apply(tensor), dim=0)


def gather_ids(ids: torch.Tensor) -> torch.Tensor:
    """Concatenate an integer id tensor (B,) from every rank (no gradient)."""
    _, world = world_info()
    if world == 1:
        return ids
    out = [torch.empty_like(ids) for _ in range(world)]
    dist.all_gather(out, ids.contiguous())
    return torch.cat(out, dim=0)
