"""Samplers with per-epoch deterministic order: plain shuffling and duration bucketing.

Both derive the order from ``(seed, epoch)`` only, so a resumed run replays the same batches,
and both can shard the order over data-parallel ranks (every rank computes the same global
order and keeps its share; ranks get equal counts so collective ops stay in step). Training
(``drop_last``) cuts the remainder; evaluation keeps every clip: a rank short of batches
splits its largest batch in two, as the shard stream's plan does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from alp_core.errors import ConfigError

__all__ = ["DurationBucketSampler", "EpochSampler", "EvenBatchSampler",
           "ResumableBatchSampler", "equal_batch_counts"]

log = logging.getLogger(__name__)


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"rank {rank} / world_size {world_size}: need 0 <= rank < world_size")


def equal_batch_counts(per_rank: list[list[list[int]]]) -> list[list[list[int]]]:
    """Every rank's batches, made the same number per rank without dropping a clip: a rank
    short of batches splits its largest batch in two until it has as many as the longest.

    Only when a short rank has nothing left to split (every batch one clip) are all ranks cut
    to the shortest count, with a warning naming how many batches are left out.
    """
    ranks = [[list(b) for b in batches] for batches in per_rank]
    target = max((len(b) for b in ranks), default=0)
    for batches in ranks:
        while len(batches) < target:
            j = max(range(len(batches)), key=lambda i: len(batches[i]), default=None)
            if j is None or len(batches[j]) < 2:
                break
            half = len(batches[j]) // 2
            batches[j:j + 1] = [batches[j][:half], batches[j][half:]]
    counts = [len(b) for b in ranks]
    if min(counts, default=0) < target:
        log.warning("ranks differ in batches (%s) and cannot split more; keeping %d on every "
                    "rank, so %d batches are not read this epoch", counts, min(counts),
                    sum(counts) - min(counts) * len(counts))
        return [b[: min(counts)] for b in ranks]
    return ranks


class EpochSampler(Sampler[int]):
    """Indices ``0..n-1``, shuffled per epoch from ``(seed, epoch)`` when ``shuffle``.

    With ``world_size > 1`` the order is cut to a multiple of ``world_size`` and strided.
    """

    def __init__(self, num_items: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        self.num_items, self.shuffle, self.seed = num_items, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_items // self.world_size

    def __iter__(self) -> Iterator[int]:
        order = np.arange(self.num_items)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        order = order[: len(self) * self.world_size][self.rank :: self.world_size]
        return iter(order.tolist())


class EvenBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` over every clip, sharded without dropping any (evaluation).

    The epoch's order (shuffled from ``(seed, epoch)`` when ``shuffle``) is strided over the
    ranks (``order[rank::world_size]``, counts differing by at most one) and cut into
    batches; ranks are then given the same batch count by :func:`equal_batch_counts`, so
    every clip is read exactly once per epoch and collectives stay in step.
    """

    def __init__(self, num_items: int, batch_size: int, *, shuffle: bool, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        _check_rank(rank, world_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.num_items, self.batch_size = num_items, batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _all_ranks(self) -> list[list[list[int]]]:
        order = np.arange(self.num_items)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_items)
        shares = [order[r :: self.world_size].tolist() for r in range(self.world_size)]
        return equal_batch_counts([[s[i:i + self.batch_size]
                                    for i in range(0, len(s), self.batch_size)]
                                   for s in shares])

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._all_ranks()[self.rank])

    def __len__(self) -> int:
        return len(self._all_ranks()[self.rank])


class DurationBucketSampler(Sampler[list[int]]):
    """Batches of clips of similar duration whose padded size stays under a budget.

    Clips are sorted by duration (ties broken at random) and cut into ``num_buckets``
    equal-count buckets; within each bucket the clips are shuffled and packed greedily while
    ``max(duration) * count <= max_batch_seconds`` (and ``count <= max_batch_size``); the
    batches of all buckets are then shuffled. A clip longer than the budget gets its own
    batch. With ``drop_last`` each bucket's final, under-filled batch is dropped, and over
    several ranks the batches left after an equal share each; without it every clip is kept
    (:func:`equal_batch_counts`).
    """

    def __init__(
        self,
        durations: Sequence[float],
        *,
        max_batch_seconds: float,
        max_batch_size: int | None = None,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if max_batch_seconds <= 0:
            raise ConfigError(f"max_batch_seconds must be > 0 (seconds), got {max_batch_seconds}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
        if num_buckets < 1:
            raise ConfigError(f"num_buckets must be >= 1, got {num_buckets}")
        _check_rank(rank, world_size)
        self.durations = np.asarray(durations, dtype=np.float64)
        self.max_batch_seconds = float(max_batch_seconds)
        self.max_batch_size = max_batch_size
        self.num_buckets = num_buckets
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _pack(self, bucket: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index in bucket.tolist():
            dur = float(self.durations[index])
            new_longest = max(longest, dur)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or new_longest * (len(current) + 1) > self.max_batch_seconds):
                batches.append(current)
                current, new_longest = [], dur
            current.append(index)
            longest = new_longest
        # drop_last drops only a batch that could still have taken a clip, not a full one
        full = (self.max_batch_size is not None and len(current) >= self.max_batch_size) or \
            longest * (len(current) + 1) > self.max_batch_seconds
        if current and (full or not self.drop_last):
            batches.append(current)
        return batches

    def global_batches(self) -> list[list[int]]:
        """All ranks' batches of the current epoch, in order."""
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.durations)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        order = order[np.argsort(self.durations[order], kind="stable")]
        batches: list[list[int]] = []
        for bucket in np.array_split(order, min(self.num_buckets, max(n, 1))):
            if self.shuffle:
                bucket = rng.permutation(bucket)
            batches.extend(self._pack(bucket))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _mine(self) -> list[list[int]]:
        batches = self.global_batches()
        if self.drop_last:
            keep = len(batches) // self.world_size * self.world_size
            return batches[:keep][self.rank :: self.world_size]
        shares = [batches[r :: self.world_size] for r in range(self.world_size)]
        return equal_batch_counts(shares)[self.rank]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._mine())

    def __len__(self) -> int:
        return len(self._mine())


class ResumableBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler so an epoch can start at batch ``k`` (exact mid-epoch resume).

    The order of an epoch depends on ``(seed, epoch)`` only, so skipping the first ``k``
    batches reproduces what an uninterrupted run would load next without reading the clips
    it already trained on. :meth:`state_dict` holds the epoch and the batches consumed.
    """

    def __init__(self, batches: Sampler[list[int]] | Iterable[list[int]]) -> None:
        self.batches = batches
        self.epoch = 0
        self.start = 0
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.consumed = 0  # a state_dict taken now is at the new epoch's start
        self.epoch = int(epoch)
        # a torch BatchSampler holds the epoch-aware sampler inside
        for obj in (self.batches, getattr(self.batches, "sampler", None)):
            setter = getattr(obj, "set_epoch", None)
            if setter is not None:
                setter(epoch)

    def skip(self, count: int) -> None:
        """Start the next iteration at batch ``count`` of the epoch (then from 0 again)."""
        if count < 0:
            raise ValueError(f"cannot skip {count} batches")
        self.start = int(count)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(state["epoch"])
        self.skip(state["batches_consumed"])

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]  # the full epoch, for schedules

    def __iter__(self) -> Iterator[list[int]]:
        start, self.start = self.start, 0
        self.consumed = start
        for i, batch in enumerate(self.batches):
            if i < start:
                continue
            self.consumed = i + 1
            yield batch
