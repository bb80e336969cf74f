"""Batch tensors that cross from a loader worker to the main process without a copy.

A DataLoader worker sends each tensor of a batch through shared memory: a tensor made in
ordinary memory is copied into a new shared segment when the batch is pickled. A batch tensor
made in shared memory from the start (:func:`batch_tensor`, as ``default_collate`` does)
skips that copy, but a new segment is still expensive: the kernel reserves and zeroes every
page, and each page faults in again when it is first written (about 5 ms for the 7 MB of
fbank features in a batch of 32 clips of 3-10 s, some 15% of the worker's time). Sending a
segment costs too: torch passes its descriptor through the sending process's
resource-sharer thread, a socket connection and an authentication handshake per tensor.

So each worker process keeps a few segments (:data:`POOL_SLOTS`) and writes batch after batch
into them (:func:`leased_batch_tensor`), and the main process maps each segment once:

- a segment is lent while the main process holds the batch: the worker marks its slot in a
  small shared table, the batch travels as a :class:`LoaderBatch` carrying a :class:`Lease`;
- the batch carries the segment itself only until the main process has mapped it (the main
  process records the segment's generation in the table); later batches carry the slot, the
  generation and the shape, and the main process hands its consumer a tensor over its own
  mapping of the segment, with no descriptor passed and no page faulted in again;
- once that tensor and every view of it are freed, the slot is handed back at once (a
  finalizer on the array the tensor is made over). A slot is reused only after that; when
  none is free the worker makes a new segment, so a consumer keeping batches costs memory and
  time, never correctness;
- the main process drops its mappings of a worker's segments when that worker has exited.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.multiprocessing.reductions import StorageWeakRef

__all__ = ["POOL_SLOTS", "SMALL_TENSOR_BYTES", "Lease", "LoaderBatch", "batch_tensor",
           "leased_batch_tensor"]

#: Shared-memory segments each loader worker reuses for batch features: the DataLoader keeps
#: ``prefetch_factor`` (default 2) batches per worker in flight, the training step holds one
#: and the pin-memory thread may hold another.
POOL_SLOTS = 6

_GROWTH = 1.25  # a segment is made this much larger than asked, so longer batches still fit

# a pool's shared table: [lent flag of each slot, "main keeps the table", mapped generation
# of each slot (0: none)]
_KNOWN = POOL_SLOTS


def _mapped(slot: int) -> int:
    return POOL_SLOTS + 1 + slot


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
    """Slot ``slot`` of the worker pool ``pool``, holding its ``generation``-th segment, is
    lent out with a batch. ``flags`` (the pool's shared table) comes along until the main
    process has it."""

    pool: str
    slot: int
    generation: int = 1
    flags: torch.Tensor | None = None


class _WorkerPool:
    """The reusable segments of one worker process. ``flags[s]`` is 1 while slot ``s`` is
    lent to the main process; ``flags[_KNOWN]`` is set by the main process once it keeps the
    table (from then on leases travel without it) and ``flags[_mapped(s)]`` to the
    generation of slot ``s``'s segment it has mapped (from then on batches in that segment
    travel without it)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.name = f"{self.pid}-{uuid.uuid4().hex[:12]}"
        self.flags = torch.zeros(2 * POOL_SLOTS + 1, dtype=torch.int32).share_memory_()
        self.segments: list[torch.Tensor | None] = [None] * POOL_SLOTS
        self.generations = [0] * POOL_SLOTS

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
            self.generations[slot] += 1
        self.flags[slot] = 1
        known = state[_KNOWN] == 1
        return segment[:numel], Lease(self.name, slot, self.generations[slot],
                                      None if known else self.flags)

    def sendable(self, lease: Lease, features: torch.Tensor
                 ) -> tuple[tuple[int, ...], torch.UntypedStorage | None] | None:
        """What a batch sends of ``features`` lying in the segment ``lease`` names: its
        shape, and the segment's storage unless the main process has mapped it already;
        ``None`` when ``features`` is not that segment (it then travels as a tensor)."""
        segment = self.segments[lease.slot] if lease.pool == self.name else None
        if (segment is None or self.generations[lease.slot] != lease.generation
                or features.dtype != torch.float32 or not features.is_contiguous()
                or features.data_ptr() != segment.data_ptr()
                or features.numel() > segment.numel()):
            return None
        mapped = int(self.flags[_mapped(lease.slot)]) == lease.generation
        return tuple(features.shape), None if mapped else segment.untyped_storage()


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

    When its ``features`` (or the tensor under ``lease_key``: ``waves`` when features are
    deferred) lie in a worker's pooled segment it carries the :class:`Lease`, and the main
    process hands the segment back once that tensor and every view of it are freed. Its
    small CPU tensors (lengths, masks, token ids: under :data:`SMALL_TENSOR_BYTES`) travel
    by value inside the pickle instead of each through a shared-memory segment of its own,
    which costs both processes a segment and a descriptor handshake per tensor.
    """

    def __init__(self, *args: Any, lease: Lease | None = None, lease_key: str = "features",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lease = lease
        self.lease_key = lease_key

    def __reduce__(self) -> tuple[Any, ...]:
        shared: dict[str, Any] = {}
        small: dict[str, Any] = {}
        pooled = None
        key_lent = self.lease_key
        lent = self.get(key_lent)
        if (self.lease is not None and isinstance(lent, torch.Tensor)
                and _WORKER_POOL is not None and _WORKER_POOL.pid == os.getpid()):
            pooled = _WORKER_POOL.sendable(self.lease, lent)
        for key, value in self.items():
            if key == key_lent and pooled is not None:
                shared[key] = None  # rebuilt over the main process's mapping
            elif _small(value):
                small[key] = value.numpy()
                shared[key] = None  # keeps the key's place; filled in on arrival
            else:
                shared[key] = value
        return _rebuild_batch, (shared, self.lease, small, pooled, key_lent)


#: Tensors up to this size travel inside a :class:`LoaderBatch`'s pickle.
SMALL_TENSOR_BYTES = 1 << 16


def _small(value: Any) -> bool:
    return (type(value) is torch.Tensor and value.device.type == "cpu"
            and not value.requires_grad and value.is_contiguous()
            and value.dtype in _NUMPY_DTYPES
            and value.numel() * value.element_size() <= SMALL_TENSOR_BYTES)


_NUMPY_DTYPES = {torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                 torch.float16, torch.float32, torch.float64}


# main process: the flag tables of worker pools, its mappings of their segments, and the lent
# slots watched by storage (batches whose features were not in the lent segment). Tables are
# written through numpy views: a table first unpickled under torch.inference_mode() is an
# inference tensor, which torch refuses to update in place outside that mode.
_LOCK = threading.Lock()  # batches may be unpickled in the pin-memory thread
_MAIN_FLAGS: dict[str, np.ndarray] = {}
_MAIN_SEGMENTS: dict[tuple[str, int], tuple[int, np.ndarray]] = {}
_WATCHED: list[tuple[np.ndarray, int, StorageWeakRef]] = []


def _forget_in_child() -> None:
    """A forked child (e.g. the next epoch's loader workers) is nobody's main process: without
    this it would keep the parent's mappings, and so the segments of exited workers, alive."""
    global _LOCK
    _LOCK = threading.Lock()
    _MAIN_FLAGS.clear()
    _MAIN_SEGMENTS.clear()
    _WATCHED.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _rebuild_batch(batch: dict[str, Any], lease: Lease | None,
                   small: dict[str, Any] | None = None,
                   pooled: tuple[tuple[int, ...], torch.UntypedStorage | None] | None = None,
                   key_lent: str = "features") -> LoaderBatch:
    for key, array in (small or {}).items():
        batch[key] = torch.from_numpy(array)
    if lease is not None and pooled is not None:
        batch[key_lent] = _lent_features(lease, *pooled)
    elif lease is not None:  # the lent tensor did not travel as the lent segment
        lent = batch.get(key_lent)
        _watch(lease, lent if isinstance(lent, torch.Tensor) and lent.is_shared() else None)
    return LoaderBatch(batch, lease_key=key_lent)


def _pool_flags(lease: Lease) -> np.ndarray | None:
    """The flag table of ``lease``'s pool (a numpy view of the shared tensor), kept from the
    lease that brought it (``_LOCK`` held); a new pool is the moment to drop the pools of
    workers that have exited."""
    if lease.flags is None:
        return _MAIN_FLAGS.get(lease.pool)
    if lease.pool not in _MAIN_FLAGS:
        _drop_exited_pools()
    flags = _MAIN_FLAGS[lease.pool] = lease.flags.numpy()  # the view keeps the tensor alive
    flags[_KNOWN] = 1  # the worker may now send leases without the table
    return flags


def _lent_features(lease: Lease, shape: tuple[int, ...],
                   storage: torch.UntypedStorage | None) -> torch.Tensor:
    """The batch's features over this process's mapping of the lent segment (mapped now when
    ``storage`` came along), handed back to the worker as soon as they are freed."""
    key = (lease.pool, lease.slot)
    with _LOCK:
        flags = _pool_flags(lease)
        if storage is not None:
            whole = torch.empty(0, dtype=torch.float32).set_(
                storage, 0, (storage.nbytes() // 4,))
            _MAIN_SEGMENTS[key] = (lease.generation, whole.numpy())
            if flags is not None:
                flags[_mapped(lease.slot)] = lease.generation
        generation, base = _MAIN_SEGMENTS.get(key, (0, None))
        _release_freed()
    if base is None or generation != lease.generation:
        raise RuntimeError(f"a loader batch refers to segment {lease.generation} of slot "
                           f"{lease.slot} of worker pool {lease.pool}, which this process "
                           f"has not mapped (it has {generation or 'none'})")
    array = base[:math.prod(shape)].reshape(shape)  # a new array object for this batch only
    if flags is not None:  # an unknown pool's slot stays lent: that worker makes new segments
        weakref.finalize(array, _hand_back, flags, lease.slot)
    return torch.from_numpy(array)  # keeps ``array`` alive as long as any view of it


def _hand_back(flags: np.ndarray, slot: int) -> None:
    flags[slot] = 0


def _drop_exited_pools() -> None:
    """Forget the flag tables and segment mappings of worker processes that have exited
    (``_LOCK`` held): their segments' memory is then freed."""
    if os.name != "posix":
        return
    for pool in list(_MAIN_FLAGS):
        if not _alive(int(pool.split("-", 1)[0])):
            del _MAIN_FLAGS[pool]
            for key in [k for k in _MAIN_SEGMENTS if k[0] == pool]:
                del _MAIN_SEGMENTS[key]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(lease: Lease, features: torch.Tensor | None) -> None:
    """Hand ``lease``'s slot back once ``features`` (sent with the lease as a shared tensor,
    e.g. a view of the segment) and every view of it are freed, or now when the batch holds
    nothing that may lie in the segment (``None``)."""
    with _LOCK:
        flags = _pool_flags(lease)
        if flags is not None and features is None:
            flags[lease.slot] = 0
        elif flags is not None:
            _WATCHED.append((flags, lease.slot, StorageWeakRef(features.untyped_storage())))
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
