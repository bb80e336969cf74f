"""Dataset items: shapes, truncation, determinism per (seed, epoch), bad clips."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from alp_core.errors import DataError
from alp_data.dataset import AudioCaptionDataset, AudioConfig, BadClip
from alp_data.features import Fbank, FbankConfig, SpecAugment, SpecAugmentConfig
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest


def _clip(tmp_path, name, seconds, rate=16000, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    data = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    path = tmp_path / name
    sf.write(path, data, rate)
    return ManifestEntry(name.split(".")[0], str(path), seconds, rate,
                         tuple(f"caption {k} of {name}" for k in range(5)), {"domain": "env"})


@pytest.fixture
def entries(tmp_path):
    return [
        _clip(tmp_path, "a.flac", 1.0),
        _clip(tmp_path, "b.wav", 2.5, rate=44100, channels=2, seed=1),
        _clip(tmp_path, "c.flac", 0.01, seed=2),
    ]


def test_item_shapes_and_fields(entries):
    ds = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=False)
    assert len(ds) == 3
    a, b, c = ds[0], ds[1], ds[2]
    assert a["features"].shape == (98, 80) and a["num_frames"] == 98
    assert b["features"].shape == (Fbank().num_frames(40000), 80)
    assert c["num_frames"] == 1  # shorter than a window: padded to one frame
    assert a["caption"] == entries[0].captions[0] and a["captions"] == entries[0].captions
    assert a["id"] == "a" and a["index"] == 0 and a["labels"] == {"domain": "env"}
    assert a["duration"] == pytest.approx(1.0)


def test_truncation_head_in_eval_random_in_train(entries):
    cfg = AudioConfig(max_seconds=1.0)
    ev = AudioCaptionDataset(entries, audio=cfg, fbank=Fbank(), train=False)
    item = ev[1]
    assert item["num_frames"] == 98 and item["duration"] == pytest.approx(1.0)
    assert torch.equal(item["features"], ev[1]["features"])
    tr = AudioCaptionDataset(entries, audio=cfg, fbank=Fbank(), train=True)
    crops = {tuple(tr[1]["features"][0, :4].tolist()) for _ in range(2)}
    assert len(crops) == 1  # same epoch: same crop
    starts = set()
    for epoch in range(4):
        tr.set_epoch(epoch)
        feats = tr[1]["features"]
        assert feats.shape == (98, 80)
        starts.add(tuple(feats[0, :4].tolist()))
    assert len(starts) > 1


def test_min_seconds_pads(entries):
    ds = AudioCaptionDataset(entries, audio=AudioConfig(min_seconds=0.5), fbank=Fbank(),
                             train=False)
    assert ds[2]["num_frames"] == Fbank().num_frames(8000)
    assert ds.durations() == pytest.approx([1.0, 2.5, 0.5])


def test_eval_mode_is_deterministic(entries):
    one = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=False)
    two = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=False, seed=9)
    two.set_epoch(3)
    for i in range(3):
        assert torch.equal(one[i]["features"], two[i]["features"])
        assert one[i]["caption"] == two[i]["caption"] == entries[i].captions[0]


def test_train_caption_choice_is_deterministic_per_seed_and_epoch(entries):
    def choices(seed, epoch):
        ds = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=True,
                                 seed=seed)
        ds.set_epoch(epoch)
        return [ds[i]["caption"] for i in range(3) for _ in range(2)]

    assert choices(0, 0) == choices(0, 0)
    runs = {tuple(choices(s, e)) for s in range(3) for e in range(3)}
    assert len(runs) > 1
    every = {c for run in runs for c in run}
    assert len(every) > 3 and every <= {c for e in entries for c in e.captions}


def test_spec_augment_only_in_training(entries):
    aug = SpecAugment(SpecAugmentConfig(p=1.0))
    tr = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=True,
                             spec_augment=aug)
    ev = AudioCaptionDataset(entries, audio=AudioConfig(), fbank=Fbank(), train=False,
                             spec_augment=aug)
    plain = Fbank()(torch.from_numpy(sf.read(entries[0].audio, dtype="float32")[0]))
    assert torch.equal(ev[0]["features"], plain)
    assert not torch.equal(tr[0]["features"], plain)
    assert torch.equal(tr[0]["features"], tr[0]["features"])


def test_bad_clips_are_returned_not_raised(tmp_path, entries):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    bad = [
        ManifestEntry("gone", str(tmp_path / "gone.wav"), 1.0, 16000, ("x",)),
        ManifestEntry("broken", str(broken), 1.0, 16000, ("y",)),
    ]
    ds = AudioCaptionDataset(entries + bad, audio=AudioConfig(), fbank=Fbank(), train=True)
    gone, corrupt = ds[3], ds[4]
    assert isinstance(gone, BadClip) and gone.index == 3 and gone.id == "gone"
    assert "gone.wav" in gone.error and gone.path.endswith("gone.wav")
    assert isinstance(corrupt, BadClip) and "broken.flac" in corrupt.error


def test_sample_rate_mismatch_is_rejected(entries):
    with pytest.raises(DataError, match="sample_rate"):
        AudioCaptionDataset(entries, audio=AudioConfig(), train=False,
                            fbank=Fbank(FbankConfig(sample_rate=8000)))


def test_manifest_to_dataset(tmp_path, entries):
    write_manifest(tmp_path / "m.jsonl", entries)
    ds = AudioCaptionDataset(read_manifest(tmp_path / "m.jsonl"), train=False)
    assert ds[0]["num_frames"] == 98
