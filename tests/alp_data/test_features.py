"""Fbank against a slow numpy Kaldi reference; frame counts; SpecAugment masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alp_core.config import validate_model
from alp_core.errors import ConfigError
from alp_data.features import Fbank, FbankConfig, SpecAugment, SpecAugmentConfig

EPS = float(np.finfo(np.float32).eps)


def _mel(freq):
    return 1127.0 * np.log(1.0 + np.asarray(freq) / 700.0)


def _kaldi_mel_banks(num_bins, fft_size, rate, low=20.0):
    """Triangular filters equally spaced on Kaldi's mel scale, low Hz .. Nyquist."""
    mel_low, mel_high = _mel(low), _mel(rate / 2)
    delta = (mel_high - mel_low) / (num_bins + 1)
    fft_mel = _mel(np.arange(fft_size // 2 + 1) * rate / fft_size)
    fft_mel[-1] = -np.inf  # Kaldi leaves the Nyquist bin out of every filter
    banks = np.zeros((num_bins, fft_size // 2 + 1))
    for b in range(num_bins):
        left, center, right = (mel_low + (b + k) * delta for k in range(3))
        up = (fft_mel - left) / (center - left)
        down = (right - fft_mel) / (right - center)
        banks[b] = np.where((fft_mel > left) & (fft_mel < right), np.minimum(up, down), 0.0)
    return banks


def _reference_fbank(wave, rate=16000, num_bins=80, win_ms=25.0, hop_ms=10.0):
    x = np.asarray(wave, dtype=np.float64) * 32768.0
    win, hop = int(rate * win_ms / 1000), int(rate * hop_ms / 1000)
    fft_size = 1 << (win - 1).bit_length()
    n = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop : i * hop + win] for i in range(n)])
    frames = frames - frames.mean(axis=1, keepdims=True)
    prev = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = frames - 0.97 * prev
    k = np.arange(win)
    povey = (0.5 - 0.5 * np.cos(2 * np.pi * k / (win - 1))) ** 0.85
    frames = frames * povey
    power = np.abs(np.fft.rfft(frames, n=fft_size, axis=1)) ** 2
    energies = power @ _kaldi_mel_banks(num_bins, fft_size, rate).T
    return np.log(np.maximum(energies, EPS))


def test_matches_numpy_kaldi_reference():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    wave = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t)
            + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    out = Fbank()(torch.from_numpy(wave))
    ref = _reference_fbank(wave.astype(np.float64))
    assert out.shape == ref.shape == (48, 80) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-3, rtol=0)


def test_pure_sine_peaks_in_the_right_bin():
    t = np.arange(4000) / 16000
    wave = torch.from_numpy((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    feats = Fbank()(wave)
    centers = 700 * (np.exp(np.linspace(_mel(20), _mel(8000), 82)[1:-1] / 1127) - 1)
    assert abs(int(feats.mean(0).argmax()) - int(np.abs(centers - 1000).argmin())) <= 1


@pytest.mark.parametrize("num_samples", [0, 399, 400, 559, 560, 16000, 16001])
def test_frame_count_formula(num_samples):
    fbank = Fbank()
    expected = 0 if num_samples < 400 else 1 + (num_samples - 400) // 160
    assert fbank.num_frames(num_samples) == expected
    feats = fbank(torch.zeros(num_samples) + 0.001)
    assert feats.shape == (expected, 80)


def test_config_is_strict_and_other_sizes_work():
    with pytest.raises(ConfigError, match="num_mel_bin"):
        validate_model(FbankConfig, {"num_mel_bin": 64})
    fbank = Fbank(FbankConfig(num_mel_bins=64, frame_shift_ms=20.0))
    assert fbank(torch.randn(8000) * 0.1).shape == (fbank.num_frames(8000), 64)
    assert fbank.num_frames(8000) == 1 + (8000 - 400) // 320


def test_spec_augment_is_seeded_and_masks_with_the_mean():
    feats = torch.randn(300, 80)
    aug = SpecAugment(SpecAugmentConfig(p=1.0))
    a = aug(feats, torch.Generator().manual_seed(1))
    b = aug(feats, torch.Generator().manual_seed(1))
    c = aug(feats, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    changed = a != feats
    assert changed.any()
    assert torch.allclose(a[changed], feats.mean().expand(int(changed.sum())))
    full_rows = changed.all(dim=1).sum()
    assert full_rows <= 0.15 * 300 + 1e-6
    assert torch.equal(SpecAugment(SpecAugmentConfig(p=0.0))(feats), feats)
    assert SpecAugment()(torch.zeros(0, 80)).shape == (0, 80)


def test_spec_augment_in_place_masks_the_same_cells():
    feats = torch.randn(300, 80)
    copy = feats.clone()
    masked = SpecAugment()(feats, generator=torch.Generator().manual_seed(4))
    assert torch.equal(feats, copy)  # not in place: the input is untouched
    same = SpecAugment()(copy, generator=torch.Generator().manual_seed(4), inplace=True)
    assert same is copy and torch.equal(copy, masked) and not torch.equal(copy, feats)


def test_dither_is_drawn_from_each_clips_own_stream(tmp_path):
    # it came from the global torch stream: the same clip differed on every call, and a loader
    # epoch moved the stream dropout reads
    from alp_data.dataset import AudioCaptionDataset
    from alp_data.demo import DemoCorpusConfig, generate_demo_corpus
    from alp_data.features import Fbank
    from alp_data.loader import build_loader, set_loader_epoch
    from alp_data.manifest import read_manifest

    paths = generate_demo_corpus(tmp_path / "demo", DemoCorpusConfig(
        num_clips=8, min_seconds=1.0, max_seconds=1.5, num_workers=1))
    entries = read_manifest(paths["train"])[:4]
    fbank = Fbank(FbankConfig(dither=1.0))
    dataset = AudioCaptionDataset(entries, fbank=fbank, train=True, seed=0)
    first, again = dataset[0]["features"], dataset[0]["features"]
    assert torch.equal(first, again)
    plain = AudioCaptionDataset(entries, fbank=Fbank(), train=True, seed=0)[0]["features"]
    assert not torch.equal(first, plain)  # the dither is there
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0]["features"], first)  # another epoch, other noise
    dataset.set_epoch(0)
    loader = build_loader(dataset, batch_size=4, shuffle=False, num_workers=0,
                          collator=lambda items: items)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    set_loader_epoch(loader, 0)
    batch = next(iter(loader))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(batch[0]["features"], first)  # the batch path draws the same noise
