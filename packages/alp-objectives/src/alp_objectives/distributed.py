"""Gathering features across ranks with gradient, for losses over the global batch.

Ranks may hold different row counts (the last batch of an epoch, a sampler that does not pad,
a rank with no rows at all): the gathers exchange the row counts first, pad every rank's rows
to the largest count for the equal-shape ``all_gather``, and strip the padding again, so the
result is exactly the concatenation of every rank's rows in rank order.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_sizes(rows: int, device: torch.device | str | None = None) -> list[int]:
    """Every rank's row count, in rank order (``[rows]`` without torch.distributed).

    ``device`` is where the small count tensor lives; it must suit the process group's backend
    (a CUDA device for NCCL), so pass the device of the tensors about to be gathered.
    """
    _, world = world_info()
    if world == 1:
        return [rows]
    local = torch.tensor([rows], dtype=torch.int64, device=device)
    out = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(out, local)
    return torch.cat(out).tolist()


def row_offset(sizes: list[int]) -> int:
    """Index of this rank's first row in the concatenation of every rank's rows."""
    rank, _ = world_info()
    return sum(sizes[:rank])


def _all_gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate ``tensor`` (sizes[rank], ...) of every rank along dim 0 (no autograd).

    Rows are padded to ``max(sizes)`` for the equal-shape collective and stripped afterwards;
    when every rank has the same count nothing is padded or copied beyond the gather itself.
    """
    rank, world = world_info()
    if tensor.shape[0] != sizes[rank]:
        raise ValueError(
            f"rank {rank} passed {tensor.shape[0]} rows but announced {sizes[rank]}"
        )
    most = max(sizes)
    if most == 0:
        raise ValueError("every rank passed 0 rows; there is nothing to gather")
    tensor = tensor.contiguous()
    if tensor.shape[0] < most:
        padded = tensor.new_zeros((most, *tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        tensor = padded
    out = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(out, tensor)
    if len(set(sizes)) == 1:
        return torch.cat(out, dim=0)
    return torch.cat([chunk[:n] for chunk, n in zip(out, sizes)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather of uneven row counts; backward sums every rank's gradient of the gathered
    rows (all_reduce) and hands each rank the slice of its own rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        ctx.start = row_offset(sizes)
        ctx.rows = tensor.shape[0]
        return _all_gather_rows(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        # a private contiguous copy: all_reduce works in place and ``grad`` may be shared
        summed = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed)
        return summed[ctx.start:ctx.start + ctx.rows], None


def gather_with_grad(tensor: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate ``tensor`` (B_r, ...) from every rank along dim 0, differentiably.

    B_r may differ between ranks (and be 0 on some, not all). ``sizes`` are every rank's row
    counts from :func:`gather_sizes`; pass them when gathering several tensors of one batch to
    save the count exchange. The backward gives this rank the gradient of its own rows summed
    over every rank's loss. Without torch.distributed it returns ``tensor``.
    """
    _, world = world_info()
    if world == 1:
        return tensor
    if sizes is None:
        sizes = gather_sizes(tensor.shape[0], tensor.device)
    out: torch.Tensor = _GatherWithGrad.apply(tensor, sizes)
    return out


def gather_ids(ids: torch.Tensor, sizes: list[int] | None = None) -> torch.Tensor:
    """Concatenate an integer id tensor (B_r,) from every rank (no gradient); B_r may differ."""
    _, world = world_info()
    if world == 1:
        return ids
    if sizes is None:
        sizes = gather_sizes(ids.shape[0], ids.device)
    return _all_gather_rows(ids, sizes)
