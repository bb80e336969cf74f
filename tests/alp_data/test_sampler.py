"""Samplers: coverage, budget, determinism per (seed, epoch), rank sharding."""

from __future__ import annotations

import numpy as np
import pytest

from alp_core.errors import ConfigError
from alp_data.sampler import DurationBucketSampler, EpochSampler


def _durations(n=200, seed=0):
    return np.random.default_rng(seed).uniform(0.5, 30.0, n).tolist()


@pytest.mark.parametrize("max_size", [None, 7])
def test_bucketing_covers_every_index_once_and_respects_budget(max_size):
    durs = _durations()
    sampler = DurationBucketSampler(durs, max_batch_seconds=60.0, max_batch_size=max_size,
                                    num_buckets=6, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(durs)))
        for b in batches:
            assert max(durs[i] for i in b) * len(b) <= 60.0 or len(b) == 1
            assert max_size is None or len(b) <= max_size


def test_bucketing_groups_similar_durations_and_is_deterministic():
    durs = _durations()
    one = DurationBucketSampler(durs, max_batch_seconds=100.0, num_buckets=10, seed=1)
    two = DurationBucketSampler(durs, max_batch_seconds=100.0, num_buckets=10, seed=1)
    assert list(one) == list(two)
    two.set_epoch(1)
    assert list(one) != list(two)
    spread = np.mean([max(durs[i] for i in b) - min(durs[i] for i in b) for b in one])
    assert spread < 5.0  # buckets span ~3 s of a 0.5..30 s range


def test_overlong_clip_gets_its_own_batch_and_drop_last():
    durs = [50.0, 1.0, 1.0, 1.0]
    batches = list(DurationBucketSampler(durs, max_batch_seconds=2.0, num_buckets=1,
                                         shuffle=False))
    assert [0] in batches and sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    kept = list(DurationBucketSampler([1.0] * 5, max_batch_seconds=2.0, num_buckets=1,
                                      drop_last=True))
    assert len(kept) == 2 and all(len(b) == 2 for b in kept)


def test_rank_sharding_is_disjoint_and_equal():
    durs = _durations(101)
    shards = [list(DurationBucketSampler(durs, max_batch_seconds=40.0, rank=r, world_size=3))
              for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    flat = [i for s in shards for b in s for i in b]
    assert len(flat) == len(set(flat))
    plain = [list(EpochSampler(10, shuffle=True, rank=r, world_size=3)) for r in range(3)]
    assert all(len(p) == 3 for p in plain) and len({i for p in plain for i in p}) == 9


def test_epoch_sampler_shuffles_per_epoch():
    s = EpochSampler(20, shuffle=True, seed=4)
    first = list(s)
    assert sorted(first) == list(range(20)) and first == list(s)
    s.set_epoch(1)
    assert list(s) != first
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


def test_bad_sampler_arguments():
    with pytest.raises(ConfigError, match="max_batch_seconds"):
        DurationBucketSampler([1.0], max_batch_seconds=0)
    with pytest.raises(ConfigError, match="rank"):
        EpochSampler(3, shuffle=False, rank=2, world_size=2)


def test_drop_last_keeps_a_bucket_s_last_batch_when_it_is_full():
    """drop_last drops only a batch that could still have taken a clip: with 8 equal clips
    and 4 a batch both batches are full (the last one was dropped, and with every batch
    exactly at the seconds budget no clip was kept at all)."""
    sampler = DurationBucketSampler([1.0] * 8, max_batch_seconds=100.0, max_batch_size=4,
                                    num_buckets=1, shuffle=False, drop_last=True)
    assert list(sampler) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    exact = DurationBucketSampler([1.0] * 40, max_batch_seconds=4.0, num_buckets=10,
                                  shuffle=True, drop_last=True)
    assert sorted(i for b in exact for i in b) == list(range(40))
    partial = DurationBucketSampler([1.0] * 10, max_batch_seconds=100.0, max_batch_size=4,
                                    num_buckets=1, shuffle=False, drop_last=True)
    assert list(partial) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # [8, 9] could take more: dropped


@pytest.mark.parametrize(("n", "batch", "world"), [(9, 2, 2), (10, 4, 3), (13, 4, 4), (5, 3, 4),
                                                   (1, 2, 1)])
def test_even_batches_read_every_clip_once_with_equal_counts(n, batch, world):
    from alp_data.sampler import EvenBatchSampler

    shards = [list(EvenBatchSampler(n, batch, shuffle=True, seed=2, rank=r, world_size=world))
              for r in range(world)]
    flat = sorted(i for s in shards for b in s for i in b)
    assert flat == list(range(n))  # every clip once, none dropped
    assert len({len(s) for s in shards}) == 1  # the same number of batches on every rank
    assert all(0 < len(b) <= batch for s in shards for b in s)


def test_even_batches_on_one_rank_are_the_plain_batches():
    from torch.utils.data import BatchSampler

    from alp_data.sampler import EvenBatchSampler

    for epoch in (0, 3):
        even = EvenBatchSampler(11, 4, shuffle=True, seed=5)
        plain = EpochSampler(11, shuffle=True, seed=5)
        even.set_epoch(epoch)
        plain.set_epoch(epoch)
        assert list(even) == list(BatchSampler(plain, 4, False))


def test_equal_batch_counts_splits_the_largest_batch_of_a_short_rank():
    from alp_data.sampler import equal_batch_counts

    out = equal_batch_counts([[[0, 1, 2], [3, 4, 5], [6]], [[7, 8, 9, 10]]])
    assert out == [[[0, 1, 2], [3, 4, 5], [6]], [[7], [8], [9, 10]]]
    # nothing left to split: every rank keeps the shortest count (a warning says so)
    assert equal_batch_counts([[[0], [1]], [[2]]]) == [[[0]], [[2]]]


def test_duration_buckets_without_drop_last_keep_every_clip_over_ranks():
    durs = _durations(37)
    shards = [list(DurationBucketSampler(durs, max_batch_seconds=40.0, rank=r, world_size=4))
              for r in range(4)]
    assert len({len(s) for s in shards}) == 1
    assert sorted(i for s in shards for b in s for i in b) == list(range(37))
    dropped = [list(DurationBucketSampler(durs, max_batch_seconds=40.0, rank=r, world_size=4,
                                          drop_last=True)) for r in range(4)]
    assert len({len(s) for s in dropped}) == 1  # training keeps equal shares (and drops)
