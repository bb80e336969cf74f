"""Fbank's ``precision``: how far float32 features are from Kaldi's exact result, and float64.

A float32 FFT rounds relative to the frame's loudest component, so mel bins far below it
(here: a loud tone over quiet noise, bins 60-80 dB down) carry rounding of ~1e-2 in log-mel,
and two float32 FFT libraries round differently there. ALP's CPU features equal
``kaldi.fbank`` within 1e-3 because both use torch's CPU FFT; a GPU's cuFFT does not. These
tests pin that down on the CPU with an independent FFT (scipy's) standing in for another
library, and check that ``precision="float64"`` gives the exact result whatever the FFT.

References: ``kaldi.fbank`` on the float64 wave (torchaudio's code, not ours) and scipy's FFT.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import torch
from torchaudio.compliance import kaldi

from alp_core.config import validate_model
from alp_core.errors import ConfigError
from alp_data import features
from alp_data.features import Fbank, FbankConfig

# float64 features are stored as float32: log-mel values up to ~25 round by <= 1 ulp there
STORED = 2e-6
ATOL = 1e-3  # the fbank tests' tolerance (test_features.py, test_fbank_fast.py)


def _tone_over_quiet_noise(seconds: float = 2.0, noise: float = 0.001, seed: int = 0,
                           rate: int = 16000) -> torch.Tensor:
    """A loud 3 kHz tone over noise 60 dB below it: most mel bins are a tiny share of each
    frame's energy."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.9 * np.sin(2 * np.pi * 3000 * t) + noise * rng.standard_normal(t.size)
    return torch.from_numpy(np.clip(wave, -1, 1).astype(np.float32))


def _exact(wave: torch.Tensor, cfg: FbankConfig | None = None) -> torch.Tensor:
    """kaldi.fbank in float64 (its log floor, float64 epsilon, is never reached here)."""
    cfg = cfg or FbankConfig()
    out = kaldi.fbank(wave.to(torch.float64).unsqueeze(0) * 32768.0,
                      num_mel_bins=cfg.num_mel_bins, frame_length=cfg.frame_length_ms,
                      frame_shift=cfg.frame_shift_ms, dither=cfg.dither,
                      sample_frequency=float(cfg.sample_rate), energy_floor=0.0)
    assert float(out.min()) > -10.0  # far above both floors: the features are comparable
    return out


def _scipy_rfft(x: torch.Tensor) -> torch.Tensor:
    """scipy's FFT (pocketfft's C++ code; float32 stays float32), as a torch tensor."""
    return torch.from_numpy(scipy.fft.rfft(x.numpy(), axis=-1))


@pytest.mark.parametrize("wave", [_tone_over_quiet_noise(), _tone_over_quiet_noise(noise=0.01),
                                  _tone_over_quiet_noise(noise=0.05, seed=1)],
                         ids=["noise-60dB", "noise-40dB", "noise-25dB"])
def test_float64_gives_kaldis_exact_result(wave):
    exact = _exact(wave)
    f64 = Fbank(FbankConfig(precision="float64"))(wave)
    assert f64.dtype == torch.float32 and f64.shape == exact.shape
    err64 = float((f64.double() - exact).abs().max())
    assert err64 <= STORED
    # float32 is Kaldi's own arithmetic: right to its rounding, which is larger the quieter
    # the bins are against the frame's loudest one
    err32 = float((Fbank()(wave).double() - exact).abs().max())
    assert err32 > 50 * err64


def test_float32_rounding_lies_in_the_quiet_bins_and_is_large_there():
    """The figures behind FbankConfig.precision's comment: with noise 60 dB under the tone,
    float32 features miss the exact ones by more than 1e-2 in some bin, and by less than
    1e-3 in the bins around the tone (3 kHz: mel bins 45-50 of 80)."""
    wave = _tone_over_quiet_noise()
    err = (Fbank()(wave).double() - _exact(wave)).abs().max(dim=0).values
    assert float(err.max()) > 1e-2
    assert float(err[45:51].max()) < ATOL


def test_two_float32_ffts_disagree_where_float64_ones_agree(monkeypatch):
    """What a GPU's FFT does to float32 features, shown with scipy's FFT on the CPU: the
    float32 features move by more than the fbank tolerance, the float64 ones by rounding."""
    wave = _tone_over_quiet_noise()
    torch32 = Fbank()(wave)
    torch64 = Fbank(FbankConfig(precision="float64"))(wave)
    monkeypatch.setattr(features.torch.fft, "rfft", _scipy_rfft)
    scipy32 = Fbank()(wave)
    scipy64 = Fbank(FbankConfig(precision="float64"))(wave)
    assert float((scipy32 - torch32).abs().max()) > ATOL
    assert float((scipy64 - torch64).abs().max()) <= STORED
    assert float((scipy64.double() - _exact(wave)).abs().max()) <= STORED


def test_float64_batch_paths_and_stacked_agree():
    fbank = Fbank(FbankConfig(precision="float64"))
    waves = [_tone_over_quiet_noise(seconds, seed=i) for i, seconds in enumerate((1.0, 0.02, 2.3))]
    singles = [fbank(w) for w in waves]
    for single, wave in zip(singles, waves, strict=True):
        if single.shape[0]:
            torch.testing.assert_close(single.double(), _exact(wave), atol=STORED, rtol=0)
    for got, want in zip(fbank.batch(waves), singles, strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, atol=0, rtol=0)  # per clip on the CPU: the same
    out = torch.full((3, 300, 80), float("nan"))
    padded, lengths = fbank.padded(waves, out=out)
    assert padded is out and lengths.tolist() == [s.shape[0] for s in singles]
    for row, single in zip(padded, singles, strict=True):
        torch.testing.assert_close(row[:single.shape[0]], single, atol=0, rtol=0)
        assert not row[single.shape[0]:].any()
    sizes = [w.shape[0] for w in waves]
    rows = torch.zeros(3, max(sizes))
    for i, wave in enumerate(waves):
        rows[i, :sizes[i]] = wave
    stacked = fbank.stacked(rows, sizes)
    assert stacked.dtype == torch.float32
    for row, single in zip(stacked, singles, strict=True):
        torch.testing.assert_close(row[:single.shape[0]], single, atol=STORED, rtol=0)
        assert not row[single.shape[0]:].any()


def test_float64_dither_draws_like_torchaudio():
    cfg = FbankConfig(dither=1.0, precision="float64")
    wave = _tone_over_quiet_noise(1.0)
    torch.manual_seed(5)
    ours = Fbank(cfg)(wave)
    torch.manual_seed(5)
    torch.testing.assert_close(ours.double(), _exact(wave, cfg), atol=STORED, rtol=0)
    assert float((ours - Fbank(FbankConfig(precision="float64"))(wave)).abs().max()) > 1e-3


def test_precision_is_checked_by_name():
    with pytest.raises(ConfigError, match=r"fbank\.precision.*'float32'.*'float64'"):
        validate_model(FbankConfig, {"precision": "float16"}, prefix="fbank")
    assert Fbank().dtype == torch.float32
    assert validate_model(FbankConfig, {"precision": "float64"}).precision == "float64"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_float64_equals_the_cpu_and_float32_is_as_close_as_the_cpus():
    """On a GPU: float64 features equal the CPU's to storage rounding; float32 ones are no
    farther from the exact result than three times the CPU's own float32 distance (or the
    fbank tolerance), a bound that a wrong window or mel matrix (errors of order 1) breaks."""
    waves = [_tone_over_quiet_noise(), _tone_over_quiet_noise(3.7, noise=0.05, seed=2)]
    for precision in ("float64", "float32"):
        fbank = Fbank(FbankConfig(precision=precision))
        for wave in waves:
            cpu, exact = fbank(wave), _exact(wave)
            for gpu in (fbank(wave.cuda()).cpu(),
                        fbank.stacked(wave.cuda()[None], [wave.shape[0]])[0].cpu()):
                if precision == "float64":
                    torch.testing.assert_close(gpu, cpu, atol=STORED, rtol=0)
                else:
                    bound = max(ATOL, 3 * float((cpu.double() - exact).abs().max()))
                    assert float((gpu.double() - exact).abs().max()) <= bound
