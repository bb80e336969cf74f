"""Which clips each rank and loader worker reads in an epoch, and in which batches.

Everything here is computed from the shard index alone (clip counts and durations), the
same way in every process, so no process needs to ask another what it read:

1. the epoch's shard order (a seeded permutation per epoch when shuffling) lays all clips
   out in one sequence of global positions ``0 .. N-1``;
2. rank ``r`` of ``W`` takes the contiguous slice ``[r*N//W, (r+1)*N//W)`` and splits it into
   contiguous sub-slices, one per loader worker (so each worker reads few shards, and each
   clip belongs to exactly one worker of one rank);
3. each worker shuffles its sub-slice within windows of ``shuffle_buffer`` clips (a shuffle
   buffer's mixing, but known in advance) and cuts it into batches: ``batch_size`` clips, or,
   with ``max_batch_seconds``, clips sorted by duration within the window and packed while
   ``longest * count <= max_batch_seconds`` (the padded seconds, as the map-style
   :class:`~alp_data.sampler.DurationBucketSampler` does), the window's batches then shuffled;
4. ranks get the same number of batches: without ``drop_last`` a rank short of batches
   splits its largest batches in two (every clip is still read exactly once), with it every
   rank keeps the smallest rank's count;
5. a rank's loader yields its workers' batches round-robin (worker 0 first), which is the
   order a ``torch.utils.data.DataLoader`` over an iterable dataset delivers them in.

A position in that round-robin order is all a resume needs: :meth:`EpochPlan.resume` says
which batch every worker starts from and which worker comes first.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from alp_core.errors import ConfigError, DataError
from alp_data.shards.index import ShardIndex

__all__ = ["EpochPlan", "PlanConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanConfig:
    """How a stream is cut into batches (see the module docstring)."""

    batch_size: int
    max_batch_seconds: float | None = None
    shuffle: bool = True
    shuffle_buffer: int = 1000
    drop_last: bool = False
    seed: int = 0
    min_seconds: float = 0.0
    max_seconds: float = math.inf

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be >= 1 (clips), got {self.shuffle_buffer}")
        if self.max_batch_seconds is not None and self.max_batch_seconds <= 0:
            raise ConfigError(f"max_batch_seconds must be > 0, got {self.max_batch_seconds}")


class EpochPlan:
    """The batches of one epoch for ``world_size`` ranks of ``num_workers`` workers each."""

    def __init__(self, index: ShardIndex, config: PlanConfig, epoch: int, *, world_size: int = 1,
                 num_workers: int = 0) -> None:
        if world_size < 1:
            raise ConfigError(f"world_size must be >= 1, got {world_size}")
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.index, self.config, self.epoch = index, config, int(epoch)
        self.world_size = world_size
        self.workers = max(1, num_workers)
        counts = np.array([s.clips for s in index.shards], dtype=np.int64)
        self.num_clips = int(counts.sum())
        if self.num_clips < world_size * self.workers:
            raise DataError(f"{self.num_clips} clips cannot be split over {world_size} ranks x "
                            f"{self.workers} workers; use fewer workers or more data")
        if config.max_batch_seconds is not None and any(
                s.clips and not s.durations for s in index.shards):
            raise DataError("duration-bucketed batches need per-clip durations in the shard "
                            "index (written by `alp data shard`)")
        rng = np.random.default_rng([config.seed & 0xFFFFFFFF, self.epoch, 0x5A4D])
        self.shard_order = (rng.permutation(len(counts)) if config.shuffle
                            else np.arange(len(counts)))
        ordered = counts[self.shard_order]
        #: global position of the first clip of each shard, in epoch order
        self.shard_starts = np.concatenate([[0], np.cumsum(ordered)])

    # -- where clips are ------------------------------------------------------------------
    def locate(self, position: int) -> tuple[int, int]:
        """``(shard number in the index, clip position inside it)`` of a global position."""
        slot = int(np.searchsorted(self.shard_starts, position, side="right")) - 1
        return int(self.shard_order[slot]), int(position - self.shard_starts[slot])

    @cached_property
    def durations(self) -> np.ndarray:
        """Seconds of every global position (clipped to the transform's limits)."""
        parts = [np.asarray(self.index.shards[i].durations, dtype=np.float64)
                 for i in self.shard_order]
        values = np.concatenate(parts) if parts else np.zeros(0)
        return np.clip(values, self.config.min_seconds, self.config.max_seconds)

    def slice(self, rank: int, worker: int) -> tuple[int, int]:
        """The ``[start, stop)`` global positions worker ``worker`` of rank ``rank`` reads."""
        n, w, k = self.num_clips, self.world_size, self.workers
        lo, hi = rank * n // w, (rank + 1) * n // w
        size = hi - lo
        return lo + worker * size // k, lo + (worker + 1) * size // k

    # -- batches ---------------------------------------------------------------------------
    def _worker_batches(self, rank: int, worker: int) -> list[np.ndarray]:
        cfg = self.config
        start, stop = self.slice(rank, worker)
        rng = np.random.default_rng([cfg.seed & 0xFFFFFFFF, self.epoch, rank, worker, 0xB0])
        windows = []
        for lo in range(start, stop, cfg.shuffle_buffer):
            window = np.arange(lo, min(lo + cfg.shuffle_buffer, stop))
            windows.append(rng.permutation(window) if cfg.shuffle else window)
        if cfg.max_batch_seconds is None:
            order = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64)
            cut = range(0, len(order), cfg.batch_size)
            batches = [order[i:i + cfg.batch_size] for i in cut]
            if cfg.drop_last and batches and len(batches[-1]) < cfg.batch_size:
                batches.pop()
            return batches
        batches = []
        for window in windows:
            packed = self._pack(window)
            if cfg.drop_last and packed and not self._full(packed[-1]):
                packed.pop()  # only a batch that could still have taken a clip
            if cfg.shuffle:
                packed = [packed[i] for i in rng.permutation(len(packed))]
            batches.extend(packed)
        return batches

    def _full(self, batch: np.ndarray) -> bool:
        """Whether ``batch`` holds ``batch_size`` clips or one more of its longest would pass
        the seconds budget (a window's last batch is then as full as any other)."""
        cfg = self.config
        assert cfg.max_batch_seconds is not None
        longest = float(self.durations[batch].max()) if len(batch) else 0.0
        return len(batch) >= cfg.batch_size or longest * (len(batch) + 1) > cfg.max_batch_seconds

    def _pack(self, window: np.ndarray) -> list[np.ndarray]:
        """Sort a window by duration and pack it under the padded-seconds budget."""
        cfg = self.config
        assert cfg.max_batch_seconds is not None
        durs = self.durations[window]
        order = np.argsort(durs, kind="stable")
        window, durs = window[order], durs[order]
        batches, begin = [], 0
        for i in range(1, len(window) + 1):
            count = i - begin
            too_long = i < len(window) and durs[i] * (count + 1) > cfg.max_batch_seconds
            if i == len(window) or count >= cfg.batch_size or too_long:
                batches.append(window[begin:i])
                begin = i
        return batches

    @cached_property
    def _natural(self) -> list[list[list[np.ndarray]]]:
        return [[self._worker_batches(r, k) for k in range(self.workers)]
                for r in range(self.world_size)]

    @cached_property
    def _equal(self) -> list[list[list[np.ndarray]]]:
        """Every rank's worker batches, made the same number per rank."""
        plans = [[list(b) for b in rank] for rank in self._natural]
        counts = [sum(len(b) for b in rank) for rank in plans]
        if self.config.drop_last or min(counts) == max(counts):
            target = min(counts)
            return [self._truncate(rank, target) for rank in plans]
        target = max(counts)
        for rank in plans:
            while sum(len(b) for b in rank) < target and self._split_largest(rank):
                pass
        counts = [sum(len(b) for b in rank) for rank in plans]
        if min(counts) < target:  # only when a rank has nothing left to split (batch_size 1)
            log.warning("shard plan: ranks differ in batches (%s); keeping %d on every rank, "
                        "so %d batches are not read this epoch", counts, min(counts),
                        sum(counts) - min(counts) * len(counts))
            return [self._truncate(rank, min(counts)) for rank in plans]
        return plans

    @staticmethod
    def _split_largest(rank: list[list[np.ndarray]]) -> bool:
        best = max(((len(b), -k, -j) for k, batches in enumerate(rank)
                    for j, b in enumerate(batches)), default=(0, 0, 0))
        size, k, j = best[0], -best[1], -best[2]
        if size < 2:
            return False
        batch = rank[k][j]
        rank[k][j:j + 1] = [batch[: size // 2], batch[size // 2:]]
        return True

    def _truncate(self, rank: list[list[np.ndarray]], target: int) -> list[list[np.ndarray]]:
        keep = [0] * self.workers
        for worker, _ in self._round_robin([len(b) for b in rank])[:target]:
            keep[worker] += 1
        return [batches[:n] for batches, n in zip(rank, keep)]

    @staticmethod
    def _round_robin(lengths: list[int]) -> list[tuple[int, int]]:
        order = []
        for j in range(max(lengths, default=0)):
            order.extend((k, j) for k, n in enumerate(lengths) if j < n)
        return order

    def worker_batches(self, rank: int, worker: int) -> list[np.ndarray]:
        """The batches (arrays of global positions) worker ``worker`` of rank ``rank`` yields."""
        return self._equal[rank][worker]

    def order(self, rank: int) -> list[tuple[int, int]]:
        """``(worker, batch number of that worker)`` in the order rank ``rank`` receives them."""
        return self._round_robin([len(b) for b in self._equal[rank]])

    def batches(self, rank: int) -> list[np.ndarray]:
        """Rank ``rank``'s batches in the order its loader yields them."""
        return [self._equal[rank][k][j] for k, j in self.order(rank)]

    def num_batches(self, rank: int) -> int:
        return sum(len(b) for b in self._equal[rank])

    def resume(self, rank: int, consumed: int) -> tuple[int, list[int]]:
        """After ``consumed`` batches of the epoch: ``(first worker, next batch per worker)``.

        A new loader's worker slot ``s`` plays worker ``(s + first) % workers`` and starts at
        that worker's next batch, which continues the round-robin order exactly.
        """
        order = self.order(rank)
        if not 0 <= consumed <= len(order):
            raise DataError(f"cannot resume after {consumed} batches: the epoch has "
                            f"{len(order)} batches on rank {rank}")
        start = [0] * self.workers
        for worker, _ in order[:consumed]:
            start[worker] += 1
        first = order[consumed][0] if consumed < len(order) else 0
        return first, start
