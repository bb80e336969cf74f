"""Process-group set-up and the facts every rank needs (rank, world size, device).

Processes are started by torch's elastic launcher (``alp run train.nproc=N``, ``torchrun`` or
the DeepSpeed launcher), which sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_*``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from alp_core import ConfigError

__all__ = ["DistInfo", "dist_info_from_env", "init_distributed", "launched_by_torchrun"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank among ``world_size`` and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a process started by torchrun / the elastic launcher / DeepSpeed."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: the local GPU if there is one, else the CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' was asked for but no GPU is visible; "
                              "accepted: auto, cpu, cuda")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def dist_info_from_env(device: str) -> DistInfo:
    """The rank facts of this process (a single process when nothing launched it)."""
    if not launched_by_torchrun():
        return DistInfo(device=pick_device(device))
    local = int(os.environ["LOCAL_RANK"])
    return DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), local,
                    pick_device(device, local))


def init_distributed(info: DistInfo, timeout_s: float = 1800.0) -> None:
    """Open the default process group (NCCL on GPU, gloo on CPU) when world_size > 1."""
    if not info.distributed or dist.is_initialized():
        return
    from datetime import timedelta

    backend = "nccl" if info.device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=info.rank, world_size=info.world_size,
                            timeout=timedelta(seconds=timeout_s))


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (identity in a single process)."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not info.distributed:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def all_agree(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` holds on every rank (one tiny all-reduce)."""
    return agree_each([flag], info)[0]


def agree_each(flags: list[bool], info: DistInfo) -> list[bool]:
    """For each flag, True when it holds on every rank (one all-reduce for all of them)."""
    if not info.distributed:
        return [bool(f) for f in flags]
    t = torch.tensor([1 if f else 0 for f in flags], dtype=torch.int32,
                     device=info.device if info.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return [bool(v) for v in t.tolist()]


def any_rank(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` holds on at least one rank."""
    return not all_agree(not flag, info)
