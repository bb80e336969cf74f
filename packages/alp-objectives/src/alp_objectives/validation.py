"""Input checks shared by the objectives: each error names the tensor and the expected shape."""

from __future__ import annotations

import torch


def check_embeddings(**named: torch.Tensor) -> None:
    """Every tensor is (B, E) with one B >= 1 and one E, floating point, and finite."""
    _check_embeddings(named, allow_empty=False)


def check_rank_embeddings(**named: torch.Tensor) -> None:
    """As :func:`check_embeddings`, but B may be 0: one rank's share of a distributed batch.

    A rank with no rows still takes part in the collectives (and contributes columns of
    nothing), so raising there would leave the other ranks waiting in the gather.
    """
    _check_embeddings(named, allow_empty=True)


def _check_embeddings(named: dict[str, torch.Tensor], allow_empty: bool) -> None:
    shapes = {}
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (batch, dim), got {type(t)}")
        if t.dim() != 2:
            raise ValueError(f"{name} must have shape (batch, dim), got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if t.shape[0] == 0 and not allow_empty:
            raise ValueError(f"{name} is empty (batch size 0); expected at least one row")
        shapes[name] = tuple(t.shape)
    if len({s for s in shapes.values()}) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in shapes.items())
        raise ValueError(f"embeddings must share one shape (batch, dim); got {listed}")
    # one device read for every tensor's rows (a .all() per tensor would wait once each)
    flags = torch.stack([(~torch.isfinite(t)).any(dim=1) for t in named.values()]).tolist()
    for name, row_flags in zip(named, flags):
        bad = [i for i, flag in enumerate(row_flags) if flag]
        if bad:
            raise ValueError(f"{name} holds NaN or inf values (rows {bad[:5]}...)")


def check_ids(ids: torch.Tensor, batch: int) -> None:
    """Clip ids are an integer tensor of shape (batch,)."""
    if ids.dim() != 1 or ids.shape[0] != batch or ids.is_floating_point():
        raise ValueError(
            f"clip_ids must be an integer tensor of shape ({batch},), got "
            f"{ids.dtype} {tuple(ids.shape)}"
        )
