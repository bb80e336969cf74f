"""DSP against independent references: load_audio's resampling against scipy's polyphase
resampler (and its anti-alias filter measured by FFT), SpecAugment against the mask counts
and widths its configuration allows, read back from masked spectrograms of noise."""

from __future__ import annotations

import math
from math import gcd

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch

from alp_data.audio import load_audio
from alp_data.features import SpecAugment, SpecAugmentConfig

TARGET = 16000


# -- resampling --------------------------------------------------------------------------------
def _sines(rate: int, seconds: float, freqs: list[float], amp: float = 0.2) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return sum(amp * np.sin(2 * np.pi * f * t + k) for k, f in enumerate(freqs)
               ).astype(np.float32)


def _load_at_16k(tmp_path, wave: np.ndarray, rate: int) -> np.ndarray:
    path = tmp_path / f"in_{rate}.wav"
    sf.write(path, wave, rate, subtype="FLOAT")  # float WAV: no quantisation in the input
    return load_audio(str(path), TARGET).numpy().astype(np.float64)


def _amplitude(wave: np.ndarray, rate: int) -> np.ndarray:
    """Amplitude spectrum (1 Hz bins) of one second from the middle, Hann-windowed and scaled
    so a sine on a bin reads its amplitude."""
    start = (len(wave) - rate) // 2
    seg = wave[start:start + rate]
    window = np.hanning(len(seg))
    return np.abs(np.fft.rfft(seg * window)) * 2 / window.sum()


@pytest.mark.parametrize(("rate", "freqs"), [
    (44100, [220.0, 1000.0, 3100.0, 5200.0]),
    (48000, [220.0, 1000.0, 3100.0, 5200.0, 6000.0]),
    (8000, [220.0, 1000.0, 2100.0, 3000.0]),
])
def test_resampling_matches_scipy_resample_poly(tmp_path, rate, freqs):
    """Sums of sines up to 0.75 of the lower Nyquist: torchaudio's Hann-windowed sinc and
    scipy's Kaiser polyphase filter agree within 0.01 (on a peak of about 0.8) away from the
    first and last 25 ms, where the two filters treat the signal's edges differently."""
    wave = _sines(rate, 0.5, freqs)
    ours = _load_at_16k(tmp_path, wave, rate)
    g = gcd(rate, TARGET)
    reference = scipy.signal.resample_poly(wave.astype(np.float64), TARGET // g, rate // g)
    assert len(ours) == math.ceil(len(wave) * TARGET / rate) == len(reference)
    edge = int(0.025 * TARGET)
    err = np.abs(ours[edge:-edge] - reference[edge:-edge])
    assert err.max() < 0.01, err.max()
    assert np.sqrt(np.mean(err ** 2)) < 0.004
    assert np.abs(reference[edge:-edge]).max() > 0.5  # the comparison is not of near-zeros


@pytest.mark.parametrize(("rate", "tone", "stray"), [
    (48000, 10000.0, 6000),   # 10 kHz folds to 16 - 10 = 6 kHz without a low-pass
    (44100, 12000.0, 4000),   # 12 kHz folds to 4 kHz
    (8000, 3000.0, 5000),     # upsampling: the image of 3 kHz at 8 - 3 = 5 kHz
])
def test_anti_alias_filter_attenuates_out_of_band_tones(tmp_path, rate, tone, stray):
    """Measured with torchaudio's default sinc_interp_hann (lowpass_filter_width 6, rolloff
    0.99): 45.3 dB at 48k->16k (10 kHz), 55.1 dB at 44.1k->16k (12 kHz), 45.3 dB for the
    8k->16k image at 5 kHz. Required: at least 40 dB, over the whole stray band."""
    amp = 0.5
    wave = _sines(rate, 2.0, [tone], amp)
    spectrum = _amplitude(_load_at_16k(tmp_path, wave, rate), TARGET)
    band = slice(0, None)
    if tone < TARGET / 2:  # upsampling keeps the tone; everything above it is image
        assert abs(20 * np.log10(spectrum[int(tone)] / amp)) < 0.2
        band = slice(int(tone) + 200, None)
    assert 20 * np.log10(spectrum[stray] / amp) <= -40.0
    attenuation = -20 * np.log10(spectrum[band].max() / amp)
    assert attenuation >= 40.0, attenuation
    if rate == 48000:  # the measurement sees aliasing: decimating unfiltered keeps it all
        naive = _amplitude(wave[::3].astype(np.float64), TARGET)
        assert int(naive.argmax()) == stray and 20 * np.log10(naive.max() / amp) > -0.5


@pytest.mark.parametrize("rate", [48000, 44100, 8000])
def test_passband_tone_keeps_its_amplitude(tmp_path, rate):
    """A 1 kHz tone keeps its amplitude within 0.1 dB (measured: -0.0035 dB down, +0.0012 dB
    up) and its frequency (FFT peak on the 1 kHz bin)."""
    amp = 0.5
    spectrum = _amplitude(_load_at_16k(tmp_path, _sines(rate, 2.0, [1000.0], amp), rate), TARGET)
    assert int(spectrum.argmax()) == 1000
    assert abs(20 * np.log10(spectrum[1000] / amp)) < 0.1


# -- SpecAugment -------------------------------------------------------------------------------
def _runs(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``(start, width)`` of each run of True in a 1-D bool tensor."""
    runs, start = [], None
    for i, flag in enumerate([*mask.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def _masks(inp: torch.Tensor, out: torch.Tensor) -> tuple[list, list]:
    """Frequency and time runs of a masked noise spectrogram: full columns/rows equal to the
    utterance mean. Every other cell must be untouched, every masked cell the mean."""
    value = float(inp.mean())
    cols = (out == value).all(dim=0)
    rows = (out == value).all(dim=1)
    expected = inp.clone()
    expected[:, cols] = value
    expected[rows, :] = value
    assert torch.equal(out, expected), "cells outside full masked rows/columns changed"
    return _runs(cols), _runs(rows)


def _check_bounds(cfg: SpecAugmentConfig, num_frames: int, freq: list, time: list) -> None:
    n_f, size_f = cfg.num_feature_masks, cfg.features_mask_size
    assert len(freq) <= n_f
    assert sum(w for _, w in freq) <= n_f * size_f
    for _, width in freq:  # a run holds at most the masks the other runs leave to it
        assert width <= (n_f - len(freq) + 1) * size_f
    max_total = cfg.max_frames_mask_fraction * num_frames
    count = min(cfg.num_frame_masks, math.ceil(max_total / cfg.frames_mask_size))
    width_max = min(cfg.frames_mask_size, math.floor(max_total / count)) if count else 0
    assert len(time) <= count
    for _, width in time:
        assert width <= (count - len(time) + 1) * width_max
    assert sum(w for _, w in time) <= max_total  # count * width_max <= the fraction


@pytest.mark.parametrize("num_frames", [30, 120, 500, 1000, 2500])
@pytest.mark.parametrize("config", [
    SpecAugmentConfig(p=1.0),
    SpecAugmentConfig(num_feature_masks=4, features_mask_size=15, num_frame_masks=5,
                      frames_mask_size=40, max_frames_mask_fraction=0.3, p=1.0),
])
def test_spec_augment_mask_counts_and_widths(config, num_frames):
    aug = SpecAugment(config)
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        inp = torch.randn(num_frames, 80, generator=torch.Generator().manual_seed(1000 + seed))
        out = aug(inp, generator=gen)
        assert out.shape == inp.shape
        if num_frames >= 500:
            assert not torch.equal(out, inp)
        freq, time = _masks(inp, out)
        _check_bounds(config, num_frames, freq, time)
        assert torch.equal(inp, torch.randn(num_frames, 80, generator=torch.Generator()
                                            .manual_seed(1000 + seed)))  # input untouched


def test_spec_augment_probability():
    inp = torch.randn(1000, 80, generator=torch.Generator().manual_seed(0))
    never = SpecAugment(SpecAugmentConfig(p=0.0))
    always = SpecAugment(SpecAugmentConfig(p=1.0))
    half = SpecAugment(SpecAugmentConfig(p=0.5))
    masked = 0
    for seed in range(200):
        assert torch.equal(never(inp, generator=torch.Generator().manual_seed(seed)), inp)
        freq, time = _masks(inp, always(inp, generator=torch.Generator().manual_seed(seed)))
        assert freq or time  # p=1 on 1000 frames always masks something
        freq, time = _masks(inp, half(inp, generator=torch.Generator().manual_seed(seed)))
        masked += bool(freq or time)
    assert 80 <= masked <= 120  # binomial(200, 0.5): mean 100, sd 7


def _chi_square_uniform(widths: list[int], top: int) -> float:
    counts = np.bincount(widths, minlength=top + 1)
    assert len(counts) == top + 1  # no width above the maximum
    expected = len(widths) / (top + 1)
    return float(((counts - expected) ** 2 / expected).sum())


def test_spec_augment_widths_are_uniform():
    """One mask per axis (no overlaps), so its width is read back exactly: uniform over
    [0, max] (chi-square below the 0.1% critical value), starts reaching both edges."""
    freq_only = SpecAugment(SpecAugmentConfig(num_feature_masks=1, features_mask_size=10,
                                              num_frame_masks=0, p=1.0))
    # 400 frames, 15%: 60 frames, one mask of at most min(20, 60) = 20
    time_only = SpecAugment(SpecAugmentConfig(num_feature_masks=0, num_frame_masks=1,
                                              frames_mask_size=20,
                                              max_frames_mask_fraction=0.15, p=1.0))
    inp = torch.randn(400, 80, generator=torch.Generator().manual_seed(0))
    widths = {"freq": [], "time": []}
    edges = {"freq": set(), "time": set()}
    for seed in range(1100):
        for axis, aug, size in (("freq", freq_only, 80), ("time", time_only, 400)):
            freq, time = _masks(inp, aug(inp, generator=torch.Generator().manual_seed(seed)))
            runs = freq if axis == "freq" else time
            assert not (time if axis == "freq" else freq)
            assert len(runs) <= 1
            widths[axis].append(runs[0][1] if runs else 0)
            for start, width in runs:
                edges[axis] |= {"first"} if start == 0 else set()
                edges[axis] |= {"last"} if start + width == size else set()
    assert _chi_square_uniform(widths["freq"], 10) < 29.59   # df 10
    assert _chi_square_uniform(widths["time"], 20) < 45.31   # df 20
    assert abs(np.mean(widths["freq"]) - 5.0) < 0.3 and abs(np.mean(widths["time"]) - 10) < 0.6
    assert edges == {"freq": {"first", "last"}, "time": {"first", "last"}}
