"""ResumableBatchSampler: exact mid-epoch resume, epoch state, and loaders that leave the
global torch RNG alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.utils.data import BatchSampler, Dataset

from alp_data.loader import build_loader, set_loader_epoch
from alp_data.sampler import DurationBucketSampler, EpochSampler, ResumableBatchSampler

DURATIONS = [0.5 + (i * 7 % 11) * 0.3 for i in range(40)]


def plain() -> ResumableBatchSampler:
    return ResumableBatchSampler(BatchSampler(EpochSampler(23, shuffle=True, seed=3), 4, False))


def bucketed() -> ResumableBatchSampler:
    return ResumableBatchSampler(DurationBucketSampler(
        DURATIONS, max_batch_seconds=6.0, max_batch_size=8, num_buckets=3, seed=3))


MAKERS = {"epoch": plain, "bucket": bucketed}


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("k", [0, 1, 3])
def test_skip_yields_the_rest_of_the_same_epoch(kind: str, k: int):
    sampler = MAKERS[kind]()
    sampler.set_epoch(2)
    full = list(sampler)
    assert len(full) == len(sampler) >= 5
    sampler.skip(k)
    assert list(sampler) == full[k:]
    assert list(sampler) == full  # a skip applies to the next iteration only


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_state_dict_resumes_where_iteration_stopped(kind: str):
    sampler = MAKERS[kind]()
    sampler.set_epoch(1)
    full = list(sampler)
    it = iter(sampler)
    seen = [next(it) for _ in range(3)]
    assert seen == full[:3]
    state = sampler.state_dict()
    assert state == {"epoch": 1, "batches_consumed": 3}

    fresh = MAKERS[kind]()
    fresh.load_state_dict(state)
    assert fresh.epoch == 1
    assert list(fresh) == full[3:]


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_set_epoch_changes_the_order_deterministically(kind: str):
    a, b = MAKERS[kind](), MAKERS[kind]()
    a.set_epoch(0)
    epoch0 = list(a)
    a.set_epoch(1)
    epoch1 = list(a)
    b.set_epoch(1)
    assert list(b) == epoch1
    assert epoch0 != epoch1
    # the same clips, only reordered
    assert sorted(i for batch in epoch0 for i in batch) == \
        sorted(i for batch in epoch1 for i in batch)


def test_negative_skip_is_refused():
    with pytest.raises(ValueError, match="cannot skip -1"):
        plain().skip(-1)


class Numbers(Dataset):
    """Items 0..n-1 with durations (for the bucketing path)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index

    def durations(self) -> list[float]:
        return DURATIONS[: self.n]


def collate(items: list[Any]) -> list[int]:
    return [int(i) for i in items]


@pytest.mark.parametrize("seconds", [None, 6.0])
@pytest.mark.parametrize("workers", [0, 1])
def test_loader_does_not_move_the_global_torch_rng(workers: int, seconds: float | None):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    loader = build_loader(Numbers(20), batch_size=4, shuffle=True, num_workers=workers,
                          collator=collate, seed=9, max_batch_seconds=seconds)
    set_loader_epoch(loader, 1)
    first = list(loader)
    loader.batch_sampler.skip(2)
    rest = list(loader)
    assert torch.equal(torch.get_rng_state(), before)
    assert rest == first[2:]
    assert sorted(i for b in first for i in b) == list(range(20))
    del loader  # stops persistent workers


def test_state_after_set_epoch_is_at_the_new_epoch_start():
    from torch.utils.data import BatchSampler

    from alp_data.sampler import EpochSampler, ResumableBatchSampler

    sampler = ResumableBatchSampler(BatchSampler(EpochSampler(20, shuffle=True), 4, False))
    sampler.set_epoch(0)
    assert len(list(sampler)) == 5
    sampler.set_epoch(1)  # a checkpoint taken before the first batch of epoch 1
    assert sampler.state_dict() == {"epoch": 1, "batches_consumed": 0}
