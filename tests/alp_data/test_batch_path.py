"""The batched item path (``ClipTransform.batch`` / ``__getitems__``) and the worker's pool
of reused shared-memory segments: same features as one clip at a time, padding zero, and a
batch the main process still holds is never overwritten by a later one."""

from __future__ import annotations

import gc
import pickle

import pytest
import torch
from tests.shared import write_flac_clips

from alp_data import buffers
from alp_data.buffers import POOL_SLOTS, LoaderBatch, leased_batch_tensor
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset, AudioConfig
from alp_data.features import Fbank, SpecAugment
from alp_data.loader import build_loader, set_loader_epoch
from alp_data.manifest import ManifestEntry
from alp_data.transform import BadClip, ClipBatch, ClipRequest, ClipTransform


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """24 noisy FLACs of 0.3-1.5 s (every fifth at 22.05 kHz), three captions each."""
    return write_flac_clips(tmp_path_factory.mktemp("batch-path"), 24, seed=3, prefix="b",
                            seconds=(0.3, 1.5), resampled_every=5,
                            captions=lambda _, c: tuple(f"caption {k} of {c}" for k in range(3)))


def _transform(train: bool = True) -> ClipTransform:
    return ClipTransform(audio=AudioConfig(max_seconds=1.0), fbank=Fbank(), train=train,
                         seed=7, spec_augment=SpecAugment())


@pytest.mark.parametrize("train", [True, False])
def test_batch_equals_one_clip_at_a_time(clips, train, tmp_path):
    transform = _transform(train)
    missing = ManifestEntry("gone", str(tmp_path / "gone.wav"), 1.0, 16000, ("gone",))
    requests = [ClipRequest(e, index=i) for i, e in enumerate(clips[:9])]
    requests.insert(4, ClipRequest(missing, index=99))
    requests.insert(0, BadClip(index=50, id="tar", path="x.tar#tar", error="damaged",
                               reason="tar_member"))
    batch = transform.batch(requests, epoch=3)
    assert isinstance(batch, ClipBatch) and len(batch) == len(requests)
    assert [it.reason for it in batch if isinstance(it, BadClip)] == ["tar_member", "missing"]
    good = [it for it in batch if not isinstance(it, BadClip)]
    assert batch.features.shape[0] == len(good) == 9
    for row, (item, request) in enumerate(zip(good, [r for r in requests if isinstance(
            r, ClipRequest) and r.entry.id != "gone"], strict=True)):
        alone = transform(request.entry, 3, index=request.index)
        n = alone["num_frames"]
        # the same floats: crop window, caption and SpecAugment masks drawn per clip id
        assert torch.equal(batch.features[row, :n], alone["features"])
        assert int(batch.lengths[row]) == n == item["num_frames"]
        assert torch.equal(item["features"], alone["features"])
        assert item["caption"] == alone["caption"] and item["index"] == request.index
        assert torch.count_nonzero(batch.features[row, n:]) == 0  # the padding is zero
    if train:  # SpecAugment did mask something (masked cells hold the clip's mean)
        plain = ClipTransform(audio=AudioConfig(max_seconds=1.0), train=True, seed=7)
        unmasked = plain.batch(requests, epoch=3).features
        assert not torch.equal(unmasked, batch.features)


def test_collator_uses_the_stacked_features_as_they_are(clips):
    batch = _transform().batch([ClipRequest(e, index=i) for i, e in enumerate(clips[:5])], 0)
    collated = Collator()(batch)
    assert collated["features"] is batch.features
    assert torch.equal(collated["feature_lengths"], batch.lengths)
    assert collated["feature_mask"].sum() == batch.lengths.sum()
    # a plain list of the same items (any collate function's input) gives the same batch
    again = Collator()(list(batch))
    assert torch.equal(again["features"], collated["features"])


def test_dataset_getitems_is_what_getitem_gives(clips):
    dataset = AudioCaptionDataset(clips, audio=AudioConfig(max_seconds=1.0), train=True,
                                  seed=2, spec_augment=SpecAugment())
    dataset.set_epoch(4)
    got = dataset.__getitems__([5, 0, 17])
    for row, index in enumerate([5, 0, 17]):
        alone = dataset[index]
        assert torch.equal(got.features[row, :alone["num_frames"]], alone["features"])


def test_outside_a_worker_nothing_is_leased():
    tensor, lease = leased_batch_tensor(2, 3, 4)
    assert lease is None and tensor.shape == (2, 3, 4) and not tensor.is_shared()


def test_loader_batch_pickles_as_a_dict():
    batch = LoaderBatch({"ids": ["a"], "features": torch.ones(1, 2, 3)})
    back = pickle.loads(pickle.dumps(batch))
    assert isinstance(back, dict) and back.keys() == batch.keys()
    assert torch.equal(back["features"], batch["features"]) and back.lease is None


def _segment(tensor: torch.Tensor) -> int:
    """Which segment a batch's features lie in: the main process maps each pooled segment
    once, at an address of its own while it is mapped."""
    return tensor.untyped_storage().data_ptr()


def _loader(clips, workers: int):
    dataset = AudioCaptionDataset(clips, audio=AudioConfig(max_seconds=1.0), train=True,
                                  seed=1, spec_augment=SpecAugment())
    loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=workers,
                          collator=Collator(), seed=1)
    return dataset, loader


def _expected(dataset, batch, epoch):
    return [dataset.transform(dataset.entries[i], epoch, index=i)["features"]
            for i in batch["indices"]]


@pytest.mark.parametrize("workers", [1, 2])
def test_held_batches_are_never_overwritten_and_freed_ones_are_reused(clips, workers):
    """Every third batch is kept to the end while the others are dropped at once: the kept
    ones must still hold their own features after the workers reused the freed segments
    many times over (a pool that ignored what the main process holds would overwrite them),
    and the dropped ones must have come from a handful of reused segments."""
    dataset, loader = _loader(clips, workers)
    kept, segments, count = [], set(), 0
    for epoch in range(3):
        set_loader_epoch(loader, epoch)
        for batch in loader:
            segments.add(_segment(batch["features"]))
            count += 1
            if count % 3 == 0:
                kept.append((epoch, batch))
            else:  # checked now, then dropped
                for row, feats in enumerate(_expected(dataset, batch, epoch)):
                    assert torch.equal(batch["features"][row, :feats.shape[0]], feats)
            del batch
    for epoch, batch in kept:
        for row, feats in enumerate(_expected(dataset, batch, epoch)):
            n = feats.shape[0]
            assert torch.equal(batch["features"][row, :n], feats)
            assert torch.count_nonzero(batch["features"][row, n:]) == 0
    assert count == 24 and len(kept) == 8
    # kept batches pin their segments; the dropped 16 share at most the rest of the pool
    # (and the few batches in flight when a slot was not yet handed back)
    assert len(segments) <= len(kept) + workers * POOL_SLOTS
    assert len(segments) < count


def test_a_full_pool_falls_back_to_new_segments(clips):
    """Holding every batch lends out every slot: the worker then makes new segments, and
    all batches stay intact."""
    dataset, loader = _loader(clips, 1)
    set_loader_epoch(loader, 0)
    held = list(loader)
    assert len(held) == 8 > POOL_SLOTS
    assert len({_segment(b["features"]) for b in held}) == len(held)
    for batch in held:
        for row, feats in enumerate(_expected(dataset, batch, 0)):
            assert torch.equal(batch["features"][row, :feats.shape[0]], feats)
    pools = [buffers._MAIN_FLAGS[name] for name in _pools_of(loader)]
    assert len(pools) == 1 and pools[0][:POOL_SLOTS].tolist() == [1] * POOL_SLOTS
    # freeing the batches hands every slot back at once, with no later batch needed
    del held, batch
    gc.collect()
    assert pools[0][:POOL_SLOTS].tolist() == [0] * POOL_SLOTS


def _pools_of(loader) -> list[str]:
    """The worker pools (by name) of ``loader``'s live workers."""
    pids = {str(w.pid) for w in loader._iterator._workers}
    return [name for name in buffers._MAIN_FLAGS if name.split("-")[0] in pids]


@pytest.mark.parametrize("workers", [1, 2])
def test_each_segment_crosses_once(clips, workers, monkeypatch):
    """A pooled segment's descriptor travels with the first batch written into it only:
    later batches in it carry the slot and shape, and come out over the same mapping."""
    received = []
    lent = buffers._lent_features

    def counting(lease, shape, storage):
        received.append(storage is not None)
        return lent(lease, shape, storage)

    monkeypatch.setattr(buffers, "_lent_features", counting)
    dataset, loader = _loader(clips, workers)
    addresses = set()
    for epoch in range(3):
        set_loader_epoch(loader, epoch)
        for batch in loader:
            for row, feats in enumerate(_expected(dataset, batch, epoch)):
                assert torch.equal(batch["features"][row, :feats.shape[0]], feats)
            addresses.add(_segment(batch["features"]))
            del batch
    assert len(received) == 24
    # at most one send per slot and worker (two when a longer batch grew a segment); the
    # batches here are small, so a worker's first few slots take all of them
    assert 0 < sum(received) <= min(2 * workers * POOL_SLOTS, len(received) // 2)
    assert len(addresses) <= sum(received)


def test_mappings_of_exited_workers_are_dropped(clips):
    """Once a loader's workers have exited, the next new worker pool's first batch drops
    their flag tables and segment mappings (the segments' memory is then freed)."""
    _, first = _loader(clips, 1)
    set_loader_epoch(first, 0)
    next(iter(first))
    old = _pools_of(first)
    assert len(old) == 1 and any(key[0] == old[0] for key in buffers._MAIN_SEGMENTS)
    del first
    gc.collect()
    _, second = _loader(clips, 1)
    set_loader_epoch(second, 0)
    next(iter(second))
    assert old[0] not in buffers._MAIN_FLAGS
    assert not any(key[0] == old[0] for key in buffers._MAIN_SEGMENTS)
    assert len(_pools_of(second)) == 1


def test_the_pool_protocol_in_one_process(monkeypatch):
    """The worker and main halves of the protocol, pickled through torch's ForkingPickler in
    this process: the first batch in a slot brings its segment, the next one (after the first
    was freed) only the slot, and features not in the lent segment travel as a tensor."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions

    pool = buffers._WorkerPool()
    monkeypatch.setattr(buffers, "_WORKER_POOL", pool)
    seen = []

    def send(batch: LoaderBatch) -> LoaderBatch:
        seen.append(batch.__reduce__()[1][3])  # what the pickle carries of pooled features
        return pickle.loads(ForkingPickler.dumps(batch))

    values = []
    for round_ in range(3):
        segment, lease = pool.take(2 * 5 * 4)
        assert lease.slot == 0 and lease.generation == 1  # slot 0 came back each time
        features = segment.view(2, 5, 4)
        features.copy_(torch.arange(40.0).view(2, 5, 4) + round_)
        back = send(LoaderBatch({"features": features}, lease=lease))
        assert torch.equal(back["features"], torch.arange(40.0).view(2, 5, 4) + round_)
        assert pool.flags[lease.slot] == 1
        values.append(back["features"].sum().item())
        del back
        assert pool.flags[lease.slot] == 0
    assert [p[1] is not None for p in seen] == [True, False, False]
    assert all(p[0] == (2, 5, 4) for p in seen)
    assert values == [780.0, 820.0, 860.0]
    # features that are a view into the lent segment but not all of it: sent as a shared
    # tensor of the segment, the slot watched until that storage is freed (in one process
    # the storage is the pool's own, so it is not freed here)
    segment, lease = pool.take(40)
    view = segment.view(2, 5, 4)[:, :3]
    back = send(LoaderBatch({"features": view}, lease=lease))
    assert seen[-1] is None and torch.equal(back["features"], view)
    assert back["features"].is_shared() and pool.flags[lease.slot] == 1
    watched = [ref for flags, slot, ref in buffers._WATCHED if slot == lease.slot
               and flags is buffers._MAIN_FLAGS[pool.name]]
    assert len(watched) == 1 and not watched[0].expired()
    buffers._WATCHED.clear()
    pool.flags[lease.slot] = 0
    # features that are not in the segment at all (here small, sent by value): handed back
    # on arrival
    segment, lease = pool.take(40)
    other = torch.ones(8)
    back = send(LoaderBatch({"features": other}, lease=lease))
    assert seen[-1] is None and torch.equal(back["features"], other)
    assert pool.flags[lease.slot] == 0


def test_small_tensors_travel_by_value_and_large_ones_shared():
    """Through a worker's queue (torch's ForkingPickler) a LoaderBatch keeps its keys and
    values; the small tensors come back as ordinary tensors, the features in shared memory."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions

    mask = torch.tensor([[True, False], [True, True]])
    batch = LoaderBatch({"features": torch.randn(4, 200, 80), "feature_mask": mask,
                         "input_ids": torch.arange(6).view(2, 3), "ids": ["a", "b"],
                         "odd": torch.arange(10)[::2]})
    data = ForkingPickler.dumps(batch)
    back = pickle.loads(data)
    assert isinstance(back, LoaderBatch) and list(back) == list(batch)
    for key in ("features", "feature_mask", "input_ids", "odd"):
        assert back[key].dtype == batch[key].dtype and torch.equal(back[key], batch[key])
    assert back["ids"] == ["a", "b"]
    assert back["features"].is_shared() and not back["input_ids"].is_shared()
    assert not back["feature_mask"].is_shared()
    assert back["odd"].is_shared()  # a strided view goes the usual way


def _mappings_seen_by_child(queue) -> None:
    queue.put((len(buffers._MAIN_SEGMENTS), len(buffers._MAIN_FLAGS)))


def test_a_forked_child_drops_the_parents_mappings(clips):
    """Workers forked later (a new epoch's, another loader's) must not keep the parent's
    mappings, which would keep exited workers' segments alive for their whole life."""
    import multiprocessing as mp

    _, loader = _loader(clips, 1)
    set_loader_epoch(loader, 0)
    batches = list(loader)
    assert buffers._MAIN_SEGMENTS and buffers._MAIN_FLAGS
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_mappings_seen_by_child, args=(queue,))
    child.start()
    assert queue.get(timeout=60) == (0, 0)
    child.join(timeout=60)
    assert buffers._MAIN_SEGMENTS and len(batches) == 8  # the parent keeps its own


def test_a_table_first_received_in_inference_mode_is_still_updated(monkeypatch):
    """Evaluation unpickles batches under torch.inference_mode(), so a pool's table can first
    arrive as an inference tensor; handing a slot back after that mode is left (when the
    batch is freed later) must still work."""
    from multiprocessing.reduction import ForkingPickler

    import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions

    pool = buffers._WorkerPool()
    monkeypatch.setattr(buffers, "_WORKER_POOL", pool)
    segment, lease = pool.take(2 * 5 * 4)
    segment.fill_(1.0)
    with torch.inference_mode():
        back = pickle.loads(ForkingPickler.dumps(LoaderBatch(
            {"features": segment.view(2, 5, 4)}, lease=lease)))
    assert torch.equal(back["features"], torch.ones(2, 5, 4))
    assert pool.flags[lease.slot] == 1
    del back  # outside inference mode
    assert pool.flags[lease.slot] == 0
