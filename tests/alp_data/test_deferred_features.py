"""Deferred features (``data.features_on=device``): loader workers only decode, and the main
process computes fbank + SpecAugment for the whole batch where the model runs. On the CPU the
result must be the very batch the workers would have made, masks included, from files and
from shards, with any number of workers; the waves' shared segments must be reused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.shared import write_flac_clips

from alp_data.audio import load_audio
from alp_data.buffers import POOL_SLOTS
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset, AudioConfig
from alp_data.deferred import FeaturesOnDevice, batch_features, is_deferred
from alp_data.features import Fbank, FbankConfig, SpecAugment
from alp_data.loader import build_loader, set_loader_epoch
from alp_data.manifest import ManifestEntry
from alp_data.shards.plan import PlanConfig
from alp_data.shards.stream import build_stream_loader
from alp_data.shards.writer import write_shards
from alp_data.transform import BadClip, ClipTransform


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """30 noisy FLACs of 0.2-2.5 s (every fourth at 22.05 kHz, so resampled), two captions
    each, and one missing file."""
    folder = tmp_path_factory.mktemp("deferred")
    entries = write_flac_clips(folder, 30, seed=11, prefix="d", seconds=(0.2, 2.5),
                               resampled_every=4, tone=True,
                               captions=lambda i, c: (f"a tone {i}", f"caption two of {c}"))
    entries.insert(7, ManifestEntry("gone", str(folder / "gone.flac"), 1.0, 16000, ("x",)))
    return entries


def _dataset(clips, *, train: bool, defer: bool, fbank: Fbank | None = None):
    return AudioCaptionDataset(clips, audio=AudioConfig(max_seconds=2.0), train=train, seed=5,
                               spec_augment=SpecAugment(), defer_features=defer, fbank=fbank)


def _batches(loader, epoch: int) -> list[dict]:
    set_loader_epoch(loader, epoch)
    return list(loader)


def _same_batches(ours: list[dict], theirs: list[dict]) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a["ids"] == b["ids"] and a["captions"] == b["captions"]
        assert torch.equal(a["feature_lengths"], b["feature_lengths"])
        assert torch.equal(a["feature_mask"], b["feature_mask"])
        assert a["features"].shape == b["features"].shape
        assert torch.equal(a["features"], b["features"])  # the same floats, masks included
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert [c.id for c in a["skipped"]] == [c.id for c in b["skipped"]]
        assert not {"waves", "wave_lengths", "time_mask", "freq_mask"} & a.keys()


@pytest.mark.parametrize(("train", "workers"), [(True, 0), (True, 2), (False, 1)])
def test_features_on_device_equal_the_workers_features(clips, tokenizer, train, workers):
    collator = Collator(tokenizer)
    kwargs = {"batch_size": 4, "shuffle": train, "num_workers": workers,
              "collator": collator, "seed": 5}
    usual = build_loader(_dataset(clips, train=train, defer=False), **kwargs)
    deferred = build_loader(_dataset(clips, train=train, defer=True), **kwargs)
    on_device = FeaturesOnDevice(deferred, Fbank(), "cpu")
    assert len(on_device) == len(usual) == 8
    for epoch in (0, 3):
        ours, theirs = _batches(on_device, epoch), _batches(usual, epoch)
        _same_batches(ours, theirs)
        assert sum(len(b["skipped"]) for b in ours) == 1
    if train:  # SpecAugment did mask cells: some frames are flat at the clip's mean
        flat = sum(int((b["features"].std(dim=2) == 0).sum()) for b in ours)
        assert flat > 0


def test_float64_features_on_device_equal_the_workers_float64_features(clips, tokenizer):
    """``data.fbank.precision=float64`` reaches both paths: the same floats again, and not
    the float32 ones."""
    f64 = Fbank(FbankConfig(precision="float64"))
    kwargs = {"batch_size": 4, "shuffle": True, "num_workers": 0,
              "collator": Collator(tokenizer), "seed": 5}
    usual = build_loader(_dataset(clips, train=True, defer=False, fbank=f64), **kwargs)
    deferred = build_loader(_dataset(clips, train=True, defer=True, fbank=f64), **kwargs)
    ours = _batches(FeaturesOnDevice(deferred, f64, "cpu"), 1)
    _same_batches(ours, _batches(usual, 1))
    float32 = _batches(build_loader(_dataset(clips, train=True, defer=False), **kwargs), 1)
    assert any(not torch.equal(a["features"], b["features"])
               for a, b in zip(ours, float32, strict=True))


def test_a_deferred_batch_carries_the_decoded_waves_and_the_drawn_masks(clips):
    transform = ClipTransform(audio=AudioConfig(max_seconds=2.0), train=True, seed=5,
                              spec_augment=SpecAugment(), defer_features=True)
    loader = build_loader(AudioCaptionDataset(clips, audio=transform.audio, train=True, seed=5,
                                              spec_augment=SpecAugment(),
                                              defer_features=True),
                          batch_size=8, shuffle=False, num_workers=0, collator=Collator())
    batch = next(iter(loader))
    assert is_deferred(batch) and "features" not in batch
    waves, sizes = batch["waves"], batch["wave_lengths"]
    fbank = Fbank()
    for row, (ident, size) in enumerate(zip(batch["ids"], sizes.tolist(), strict=True)):
        entry = next(e for e in clips if e.id == ident)
        if entry.duration <= 2.0:  # the whole file: compare with a fresh decode
            assert torch.equal(waves[row, :size], load_audio(entry.audio, 16000))
        assert torch.count_nonzero(waves[row, size:]) == 0
        assert batch["feature_lengths"][row] == fbank.num_frames(size)
    assert [c.id for c in batch["skipped"]] == ["gone"]
    # the masks lie on real frames only, in widths SpecAugment allows
    cfg = SpecAugment().config
    time_mask, freq_mask = batch["time_mask"], batch["freq_mask"]
    assert not (time_mask & ~batch["feature_mask"]).any()
    assert time_mask.shape == batch["feature_mask"].shape and freq_mask.shape == (7, 80)
    assert 0 < int(freq_mask.sum(1).max()) <= cfg.num_feature_masks * cfg.features_mask_size
    assert time_mask.any()


def test_shard_stream_features_on_device_equal_the_workers(clips, tmp_path, tokenizer):
    report = write_shards([e for e in clips if e.id != "gone"], str(tmp_path / "shards"),
                          max_clips_per_shard=8)

    def loader(defer: bool):
        transform = ClipTransform(audio=AudioConfig(max_seconds=2.0), train=True, seed=2,
                                  spec_augment=SpecAugment(), defer_features=defer)
        built = build_stream_loader(report.index, transform, Collator(tokenizer),
                                    plan=PlanConfig(batch_size=5, seed=2, shuffle_buffer=4),
                                    num_workers=2)
        return FeaturesOnDevice(built, Fbank(), "cpu") if defer else built

    usual, on_device = loader(False), loader(True)
    for epoch in (1, 2):
        usual.set_epoch(epoch)
        on_device.set_epoch(epoch)  # the shard loader's own method, through the wrapper
        _same_batches(list(on_device), list(usual))
    assert on_device.state_dict()["batches_consumed"] == len(usual) == 6


def test_masks_follow_the_batch_not_the_device_code(clips):
    """An independent check of the masking: the unmasked features of the same batch, with
    each masked cell set to its clip's mean by hand."""
    dataset = _dataset(clips, train=True, defer=True)
    loader = build_loader(dataset, batch_size=8, shuffle=False, num_workers=0,
                          collator=Collator())
    batch = next(iter(loader))
    masked = batch_features(batch, Fbank())["features"]
    plain = batch_features({k: v for k, v in batch.items()
                            if k not in ("time_mask", "freq_mask")}, Fbank())["features"]
    expected = plain.clone()
    for row, count in enumerate(batch["feature_lengths"].tolist()):
        mean = plain[row, :count].double().mean().float()
        for t in range(count):
            for f in range(80):
                if batch["time_mask"][row, t] or batch["freq_mask"][row, f]:
                    expected[row, t, f] = mean
    assert not torch.equal(masked, plain)
    torch.testing.assert_close(masked, expected, rtol=1e-6, atol=1e-5)
    assert torch.count_nonzero(masked[~batch["feature_mask"]]) == 0  # padding stays zero


def test_waves_segments_are_reused_and_held_batches_stay_intact(clips):
    dataset = _dataset(clips, train=False, defer=True)
    loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=2,
                          collator=Collator(), seed=1)
    kept, segments, count = [], set(), 0
    for epoch in range(3):
        for batch in _batches(loader, epoch):
            segments.add(batch["waves"].untyped_storage().data_ptr())
            count += 1
            if count % 4 == 0:
                kept.append((batch["ids"], batch["waves"].clone(), batch))
    for _, copy, batch in kept:
        assert torch.equal(batch["waves"], copy)  # never overwritten while held
    assert count == 33 and len(segments) <= len(kept) + 2 * POOL_SLOTS < count


def test_a_batch_of_only_bad_clips_and_an_empty_batch(clips):
    batch = _dataset([c for c in clips if c.id == "gone"], train=True, defer=True)
    loader = build_loader(batch, batch_size=2, shuffle=False, num_workers=0,
                          collator=Collator())
    got = [batch_features(b, Fbank()) for b in loader]
    assert len(got) == 1 and got[0]["features"].shape == (0, 0, 80)
    assert isinstance(got[0]["skipped"][0], BadClip)


def test_another_fbank_config_is_refused_by_name(clips):
    loader = build_loader(_dataset(clips[:4], train=False, defer=True), batch_size=4,
                          shuffle=False, num_workers=0, collator=Collator())
    batch = next(iter(loader))
    with pytest.raises(ValueError, match="feature_lengths .* differs"):
        batch_features(batch, Fbank(FbankConfig(frame_shift_ms=20.0)))
    with pytest.raises(ValueError, match="lacks \\['waves'"):
        batch_features({k: v for k, v in batch.items() if k != "waves"}, Fbank())


def test_a_usual_batch_passes_through_unchanged(clips):
    loader = build_loader(_dataset(clips[:4], train=False, defer=False), batch_size=4,
                          shuffle=False, num_workers=0, collator=Collator())
    usual = next(iter(loader))
    through = next(iter(FeaturesOnDevice(loader, Fbank(), "cpu")))
    assert not is_deferred(usual) and torch.equal(through["features"], usual["features"])


def _kaldi(wave: torch.Tensor) -> torch.Tensor:
    from torchaudio.compliance import kaldi

    return kaldi.fbank(wave.unsqueeze(0) * 32768.0, num_mel_bins=80, dither=0.0,
                       energy_floor=0.0, sample_frequency=16000.0)


def test_stacked_fbank_equals_kaldi_row_by_row_and_zeroes_the_rest():
    """The one-pass path an accelerator takes, run here on the CPU: every row against
    torchaudio's kaldi.fbank of that row alone (an independent reference), frames past a
    row's own count zero; rows shorter than a window have no frames."""
    rng = np.random.default_rng(4)
    sizes = [16000, 400, 399, 9000, 23456, 0, 401]
    waves = torch.zeros(len(sizes), max(sizes))
    for row, size in enumerate(sizes):
        waves[row, :size] = torch.from_numpy(0.3 * rng.standard_normal(size).astype(np.float32))
    fbank = Fbank()
    out = fbank.stacked(waves, sizes)
    counts = [fbank.num_frames(n) for n in sizes]
    assert out.shape == (len(sizes), max(counts), 80) and counts[1:3] == [1, 0]
    for row, (size, count) in enumerate(zip(sizes, counts, strict=True)):
        if count:
            torch.testing.assert_close(out[row, :count], _kaldi(waves[row, :size]),
                                       atol=1e-3, rtol=0)
            torch.testing.assert_close(out[row, :count], fbank(waves[row, :size]),
                                       atol=1e-4, rtol=0)
        assert torch.count_nonzero(out[row, count:]) == 0
    with pytest.raises(ValueError, match="within the 23456 samples"):
        fbank.stacked(waves, [23457] + sizes[1:])


def test_the_one_pass_path_gives_the_workers_batch_to_rounding(clips):
    """``stacked=True`` (the default on a GPU) on the CPU: the same batch as the workers
    make, masks in the same cells, to float32 rounding."""
    usual = next(iter(build_loader(_dataset(clips, train=True, defer=False), batch_size=12,
                                   shuffle=False, num_workers=0, collator=Collator())))
    deferred = next(iter(build_loader(_dataset(clips, train=True, defer=True), batch_size=12,
                                      shuffle=False, num_workers=0, collator=Collator())))
    ours = batch_features(deferred, Fbank(), "cpu", stacked=True)["features"]
    clip_by_clip = batch_features(deferred, Fbank(), "cpu")["features"]
    assert torch.equal(clip_by_clip, usual["features"])
    assert ours.shape == usual["features"].shape
    torch.testing.assert_close(ours, usual["features"], atol=1e-4, rtol=0)
    flat = usual["features"].std(dim=2) == 0  # frames SpecAugment masked in full
    assert flat.any() and torch.equal(ours.std(dim=2) == 0, flat)
