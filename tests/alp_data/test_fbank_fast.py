"""The fast Fbank against torchaudio.compliance.kaldi.fbank and an independent numpy Kaldi.

Tolerance: the one test_features.py uses, ``atol=1e-3`` (log-mel units), ``rtol=0``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torchaudio.compliance import kaldi

from alp_data.features import Fbank, FbankConfig

ATOL = 1e-3
LOG_FLOOR = float(np.log(np.float32(np.finfo(np.float32).eps)))


def _torchaudio(wave: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """The call Fbank made before it computed the features itself."""
    return kaldi.fbank(wave.to(torch.float32).unsqueeze(0) * 32768.0,
                       num_mel_bins=cfg.num_mel_bins, frame_length=cfg.frame_length_ms,
                       frame_shift=cfg.frame_shift_ms, dither=cfg.dither,
                       sample_frequency=float(cfg.sample_rate), energy_floor=0.0)


def _signal(num_samples: int, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Two tones, a chirp (50 Hz up to 0.4 x Nyquist over 1 s) and some noise, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_samples) / rate
    chirp = np.sin(2 * np.pi * (50 * t + (0.2 * rate - 50) / 2 * t**2))
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 0.3 * rate * t)
            + 0.1 * chirp + 0.02 * rng.standard_normal(num_samples))
    return torch.from_numpy(wave.astype(np.float32))


def _check(fbank: Fbank, wave: torch.Tensor) -> torch.Tensor:
    out = fbank(wave)
    ref = _torchaudio(wave, fbank.config) if fbank.num_frames(wave.shape[0]) else None
    assert out.dtype == torch.float32
    assert out.shape == (fbank.num_frames(wave.shape[0]), fbank.num_mel_bins)
    if ref is not None:
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    return out


@pytest.mark.parametrize("num_samples", [1, 399, 400, 401, 559, 560, 561, 16000, 160001])
def test_lengths_match_torchaudio(num_samples):
    """Shorter than a window (no frames), exactly one window, odd lengths, 1 s, 10 s (which
    spans several CPU blocks of frames)."""
    _check(Fbank(), _signal(num_samples))


@pytest.mark.parametrize(("rate", "bins"), [(16000, 80), (16000, 64), (16000, 128),
                                            (8000, 80), (8000, 64), (8000, 128)])
def test_rates_and_bin_counts_match_torchaudio(rate, bins):
    fbank = Fbank(FbankConfig(sample_rate=rate, num_mel_bins=bins))
    _check(fbank, _signal(rate, rate))


@pytest.mark.parametrize(("length_ms", "shift_ms", "rate"), [
    (25.0, 10.0, 16000), (50.0, 12.5, 16000), (20.0, 20.0, 16000),
    (32.0, 8.0, 16000),  # a 512-sample window: no FFT padding
    (30.0, 15.0, 8000), (25.0, 10.0, 22050),  # odd window sizes
])
def test_frame_settings_match_torchaudio(length_ms, shift_ms, rate):
    fbank = Fbank(FbankConfig(frame_length_ms=length_ms, frame_shift_ms=shift_ms,
                              sample_rate=rate, num_mel_bins=40))
    _check(fbank, _signal(int(1.3 * rate) + 7, rate))


@pytest.mark.parametrize("wave", [torch.zeros(16000), torch.full((16000,), 0.25)],
                         ids=["silence", "dc"])
def test_silence_and_dc_give_the_log_floor(wave):
    """DC removal leaves nothing, every mel energy hits Kaldi's epsilon floor."""
    out = _check(Fbank(), wave)
    assert torch.equal(out, torch.full_like(out, LOG_FLOOR))


def test_dither_draws_like_torchaudio():
    cfg = FbankConfig(dither=1.0)
    wave = _signal(16000)
    torch.manual_seed(3)
    out = Fbank(cfg)(wave)
    torch.manual_seed(3)
    torch.testing.assert_close(out, _torchaudio(wave, cfg), atol=ATOL, rtol=0)
    assert not torch.allclose(out, Fbank()(wave), atol=ATOL, rtol=0)


def test_input_dtype_and_layout_do_not_matter():
    fbank = Fbank()
    wave = _signal(32001)
    expected = fbank(wave)
    torch.testing.assert_close(fbank(wave.double()), expected, atol=1e-5, rtol=0)
    strided = torch.stack([wave, -wave], dim=1)[:, 0]  # a non-contiguous view
    assert not strided.is_contiguous()
    torch.testing.assert_close(fbank(strided), expected, atol=0, rtol=0)
    assert fbank(wave[:100]).shape == (0, 80) and fbank(wave[:100]).dtype == torch.float32


def test_batch_equals_one_call_per_wave():
    fbank = Fbank()
    waves = [_signal(n, seed=n) for n in (16000, 100, 400, 91_000, 0, 12_345)]
    batched = fbank.batch(waves)
    assert len(batched) == len(waves)
    for wave, feats in zip(waves, batched, strict=True):
        torch.testing.assert_close(feats, fbank(wave), atol=1e-5, rtol=0)
    assert fbank.batch([]) == []
    assert [f.shape for f in fbank.batch([torch.zeros(10)])] == [(0, 80)]


def test_pickles_without_its_cached_constants():
    fbank = Fbank(FbankConfig(num_mel_bins=64))
    wave = _signal(8000)
    expected = fbank(wave)
    clone = pickle.loads(pickle.dumps(fbank))
    assert clone._plans == {} and clone.config == fbank.config
    torch.testing.assert_close(clone(wave), expected, atol=0, rtol=0)


def test_rejects_impossible_frames_and_non_mono_waves():
    with pytest.raises(ValueError, match="window of at least 2 samples"):
        Fbank(FbankConfig(frame_length_ms=0.05))
    with pytest.raises(ValueError, match="mono"):
        Fbank()(torch.zeros(2, 16000))
    with pytest.raises(ValueError, match="mono"):
        Fbank().batch([torch.zeros(16000), torch.zeros(1, 16000)])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_the_cpu():
    """In float64 (float32 features differ between the CPU's FFT and cuFFT by their rounding:
    test_fbank_precision.py bounds that), to the float32 storage of the result."""
    fbank = Fbank(FbankConfig(precision="float64"))
    waves = [_signal(n, seed=n) for n in (16000, 91_000)]
    for wave in waves:
        out = fbank(wave.cuda())
        assert out.device.type == "cuda" and out.dtype == torch.float32
        torch.testing.assert_close(out.cpu(), fbank(wave), atol=2e-6, rtol=0)
    for cpu, gpu in zip(fbank.batch(waves), fbank.batch([w.cuda() for w in waves]), strict=True):
        torch.testing.assert_close(gpu.cpu(), cpu, atol=2e-6, rtol=0)


# --- an independent float64 numpy Kaldi (no torchaudio), so a bug shared with it shows ---

def _htk_mel(hz):
    return 1127.0 * np.log(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_triangles(num_bins: int, fft_size: int, rate: int, low_hz: float = 20.0):
    """Kaldi's filters: triangles on the HTK mel axis whose ``num_bins + 2`` edges are equally
    spaced from ``low_hz`` to Nyquist; weights are linear in mel; the Nyquist FFT bin is in no
    filter."""
    edges = np.linspace(_htk_mel(low_hz), _htk_mel(rate / 2), num_bins + 2)
    bin_mel = _htk_mel(np.arange(fft_size // 2 + 1) * rate / fft_size)
    weights = np.zeros((fft_size // 2 + 1, num_bins))
    for b in range(num_bins):
        left, center, right = edges[b], edges[b + 1], edges[b + 2]
        for k in range(fft_size // 2):  # not the Nyquist bin
            m = bin_mel[k]
            if left < m <= center:
                weights[k, b] = (m - left) / (center - left)
            elif center < m < right:
                weights[k, b] = (right - m) / (right - center)
    return weights


def _numpy_kaldi_fbank(wave, rate, num_bins, win_ms=25.0, hop_ms=10.0):
    x = np.asarray(wave, dtype=np.float64) * 32768.0
    win, hop = int(rate * win_ms / 1000), int(rate * hop_ms / 1000)
    fft_size = 2 ** int(np.ceil(np.log2(win)))
    rows = []
    for start in range(0, len(x) - win + 1, hop):  # snip edges: whole frames only
        frame = x[start:start + win].copy()
        frame -= frame.mean()  # DC offset
        frame = frame - 0.97 * np.concatenate([frame[:1], frame[:-1]])  # preemphasis
        n = np.arange(win)
        frame *= (0.5 - 0.5 * np.cos(2 * np.pi * n / (win - 1))) ** 0.85  # povey window
        spectrum = np.fft.rfft(np.concatenate([frame, np.zeros(fft_size - win)]))
        rows.append(spectrum.real ** 2 + spectrum.imag ** 2)
    energies = np.array(rows) @ _mel_triangles(num_bins, fft_size, rate)
    return np.log(np.maximum(energies, np.finfo(np.float32).eps))


@pytest.mark.parametrize(("rate", "bins"), [(16000, 80), (8000, 64)])
def test_matches_an_independent_numpy_kaldi(rate, bins):
    wave = _signal(int(0.7 * rate) + 3, rate, seed=7)
    out = Fbank(FbankConfig(sample_rate=rate, num_mel_bins=bins))(wave)
    ref = _numpy_kaldi_fbank(wave.double().numpy(), rate, bins)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, atol=ATOL, rtol=0)


def test_padded_writes_each_wave_into_its_row_and_zeroes_the_rest():
    fbank = Fbank()
    waves = [_signal(n, seed=n) for n in (16000, 100, 91_000, 12_345)]
    out = torch.full((4, 700, 80), float("nan"))  # uninitialised memory, as a worker's
    feats, lengths = fbank.padded(waves, out=out)
    assert feats is out and lengths.tolist() == [fbank.num_frames(w.numel()) for w in waves]
    for row, wave in enumerate(waves):
        n = int(lengths[row])
        # the same floats as one call per wave: each wave's FFT blocks are its own
        assert torch.equal(feats[row, :n], fbank(wave))
        assert torch.count_nonzero(feats[row, n:]) == 0
    fresh, _ = fbank.padded(waves)
    assert fresh.shape == (4, max(lengths), 80) and torch.equal(fresh, feats[:, :fresh.shape[1]])
    with pytest.raises(ValueError, match=r"contiguous float32 \(4, >= 567, 80\)"):
        fbank.padded(waves, out=torch.zeros(4, 100, 80))
    assert fbank.padded([])[0].shape == (0, 0, 80)
