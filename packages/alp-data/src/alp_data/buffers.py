"""Batch tensors that cross from a loader worker to the main process without a copy.

A DataLoader worker sends each tensor of a batch through shared memory: a tensor made in
ordinary memory is copied into a new shared segment when the batch is pickled. A batch tensor
made in shared memory from the start (:func:`batch_tensor`, as ``default_collate`` does)
skips that copy, but a new segment is still expensive: the kernel reserves and zeroes every
page, and each page faults in again when it is first written (about 5 ms for the 7 MB of
fbank features in a batch of 32 clips of 3-10 s, some 15% of the worker's time).

So each worker process keeps a few segments (:data:`POOL_SLOTS`) and writes batch after batch
into them (:func:`leased_batch_tensor`). A segment is lent while the main process holds the
batch: the worker marks its slot in a small shared flag table, the batch travels as a
:class:`LoaderBatch` carrying a :class:`Lease`, and the main process, on receiving later
batches, hands back every slot whose tensor (with all its views) it has freed. A slot is
reused only once that has happened; when none is free the worker makes a new segment, so a
consumer keeping batches costs memory and time, never correctness.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch.multiprocessing.reductions import StorageWeakRef

__all__ = ["POOL_SLOTS", "SMALL_TENSOR_BYTES", "Lease", "LoaderBatch", "batch_tensor",
           "leased_batch_tensor"]

#: Shared-memory segments each loader worker reuses for batch features: the DataLoader keeps
#: ``prefetch_factor`` (default 2) batches per worker in flight, the training step holds one
#: and the pin-memory thread may hold another.
POOL_SLOTS = 6

_GROWTH = 1.25  # a segment is made this much larger than asked, so longer batches still fit
_MAIN_POOLS_KEPT = 64  # worker pools whose flag tables the main process keeps (LRU)


def batch_tensor(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape``; in a DataLoader worker it lives in a new
    shared-memory segment, so sending it to the main process copies nothing."""
    if torch.utils.data.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    return _shared_empty(math.prod(shape), dtype).view(shape)


def _shared_empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    elem = torch.empty(0, dtype=dtype)
    storage = elem._typed_storage()._new_shared(numel, device=elem.device)
    return elem.new(storage).resize_(numel)


@dataclass(frozen=True)
class Lease:
    """Slot ``slot`` of the worker pool ``pool`` is lent out with a batch. ``flags`` (the
    pool's shared flag table) comes along until the main process has it."""

    pool: str
    slot: int
    flags: torch.Tensor | None = None


class _WorkerPool:
    """The reusable segments of one worker process. ``flags[s]`` is 1 while slot ``s`` is
    lent to the main process; ``flags[-1]`` is set by the main process once it keeps the
    table (from then on leases travel without it)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.name = f"{self.pid}-{uuid.uuid4().hex[:12]}"
        self.flags = torch.zeros(POOL_SLOTS + 1, dtype=torch.int32).share_memory_()
        self.segments: list[torch.Tensor | None] = [None] * POOL_SLOTS

    def take(self, numel: int) -> tuple[torch.Tensor, Lease] | None:
        state = self.flags.tolist()
        free = [s for s in range(POOL_SLOTS) if state[s] == 0]
        if not free:
            return None

        def capacity(slot: int) -> int:
            segment = self.segments[slot]
            return -1 if segment is None else segment.numel()

        fits = [s for s in free if capacity(s) >= numel]
        slot = min(fits, key=capacity) if fits else max(free, key=capacity)
        segment = self.segments[slot]
        if segment is None or segment.numel() < numel:
            segment = None
            self.segments[slot] = None  # free the old segment before making a larger one
            segment = self.segments[slot] = _shared_empty(int(numel * _GROWTH), torch.float32)
        self.flags[slot] = 1
        known = state[POOL_SLOTS] == 1
        return segment[:numel], Lease(self.name, slot, None if known else self.flags)


_WORKER_POOL: _WorkerPool | None = None


def leased_batch_tensor(*shape: int) -> tuple[torch.Tensor, Lease | None]:
    """``(tensor, lease)``: an uninitialised float32 CPU tensor of ``shape``. In a DataLoader
    worker it is a reused shared-memory segment of this process's pool, lent until the main
    process frees the batch (send it in a :class:`LoaderBatch` with the lease); elsewhere,
    or when every slot is lent, it is what :func:`batch_tensor` gives, with no lease."""
    global _WORKER_POOL
    numel = math.prod(shape)
    if torch.utils.data.get_worker_info() is None or numel == 0:
        return batch_tensor(*shape), None
    if _WORKER_POOL is None or _WORKER_POOL.pid != os.getpid():
        _WORKER_POOL = _WorkerPool()
    taken = _WORKER_POOL.take(numel)
    if taken is None:
        return batch_tensor(*shape), None
    segment, lease = taken
    return segment.view(shape), lease


class LoaderBatch(dict):
    """A batch as a loader worker sends it (a plain dict to its consumer).

    When its ``features`` lie in a worker's pooled segment it carries the :class:`Lease`, and
    the main process hands the segment back once ``features`` and every view of it are
    freed. Its small CPU tensors (lengths, masks, token ids: under :data:`SMALL_TENSOR_BYTES`)
    travel by value inside the pickle instead of each through a shared-memory segment of its
    own, which costs both processes a segment and a descriptor handshake per tensor.
    """

    def __init__(self, *args: Any, lease: Lease | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lease = lease

    def __reduce__(self) -> tuple[Any, ...]:
        shared: dict[str, Any] = {}
        small: dict[str, Any] = {}
        for key, value in self.items():
            if _small(value):
                small[key] = value.numpy()
                shared[key] = None  # keeps the key's place; filled in on arrival
            else:
                shared[key] = value
        return _rebuild_batch, (shared, self.lease, small)


#: Tensors up to this size travel inside a :class:`LoaderBatch`'s pickle.
SMALL_TENSOR_BYTES = 1 << 16


def _small(value: Any) -> bool:
    return (type(value) is torch.Tensor and value.device.type == "cpu"
            and not value.requires_grad and value.is_contiguous()
            and value.dtype in _NUMPY_DTYPES
            and value.numel() * value.element_size() <= SMALL_TENSOR_BYTES)


_NUMPY_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                 torch.float16, torch.float32, torch.float64}


# main process: the flag tables of worker pools (LRU) and the lent slots being watched
_LOCK = threading.Lock()  # batches may be unpickled in the pin-memory thread
_MAIN_FLAGS: OrderedDict[str, torch.Tensor] = OrderedDict()
_WATCHED: list[tuple[torch.Tensor, int, StorageWeakRef]] = []


def _rebuild_batch(batch: dict[str, Any], lease: Lease | None,
                   small: dict[str, Any] | None = None) -> LoaderBatch:
    features = batch.get("features")
    if lease is not None and isinstance(features, torch.Tensor):
        _watch(lease, features)
    for key, array in (small or {}).items():
        batch[key] = torch.from_numpy(array)
    return LoaderBatch(batch)


def _watch(lease: Lease, features: torch.Tensor) -> None:
    with _LOCK:
        flags = lease.flags
        if flags is not None:
            _MAIN_FLAGS[lease.pool] = flags
            flags[POOL_SLOTS] = 1  # the worker may now send leases without the table
            if len(_MAIN_FLAGS) > _MAIN_POOLS_KEPT:
                _, dropped = _MAIN_FLAGS.popitem(last=False)
                dropped[POOL_SLOTS] = 0  # a live worker sends it again
        else:
            flags = _MAIN_FLAGS.get(lease.pool)
        if flags is not None:
            _MAIN_FLAGS.move_to_end(lease.pool)
            _WATCHED.append((flags, lease.slot, StorageWeakRef(features.untyped_storage())))
        # an unknown pool's slot stays lent: that worker then makes new segments instead
        _release_freed()


def _release_freed() -> None:
    """Hand back every watched slot whose batch tensor the main process has freed."""
    kept = []
    for flags, slot, ref in _WATCHED:
        if ref.expired():
            flags[slot] = 0
        else:
            kept.append((flags, slot, ref))
    _WATCHED[:] = kept
