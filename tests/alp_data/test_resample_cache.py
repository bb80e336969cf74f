"""The decoding fast path gives the reference's numbers bit for bit: resampling with a kernel
cached per rate pair equals ``torchaudio.functional.resample``; the mono mix equals the channel
mean; a local file read through its descriptor equals the same file read through fsspec, and
is opened once (the WAV truncation check reads through the same descriptor)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as taf

from alp_data import audio
from alp_data.audio import RESAMPLER_CACHE_SIZE, AudioError, load_audio, resampler

PAIRS = [(44100, 16000), (48000, 16000), (22050, 16000), (8000, 16000), (32000, 16000),
         (11025, 16000), (16000, 8000), (96000, 16000), (44100, 48000)]


def _bits(wave: torch.Tensor) -> torch.Tensor:
    """The float32 bit patterns (so -0.0 and 0.0, or two NaNs, are told apart)."""
    assert wave.dtype == torch.float32
    return wave.contiguous().view(torch.int32)


@pytest.mark.parametrize(("orig", "new"), PAIRS)
def test_cached_resampler_is_bit_identical_to_functional_resample(orig, new):
    rng = np.random.default_rng(orig + new)
    for length in (1, 5, 97, orig // 10 + 3, 3 * orig + 17):
        wave = torch.from_numpy(rng.uniform(-1, 1, length).astype(np.float32))
        wave[::13] = -0.0
        expected = taf.resample(wave, orig, new)
        got = resampler(orig, new)(wave)
        assert got.shape == expected.shape and torch.equal(_bits(got), _bits(expected))


def test_cache_is_per_rate_pair_and_bounded():
    resampler.cache_clear()
    first = resampler(44100, 16000)
    assert resampler(44100, 16000) is first  # the kernel is built once
    assert resampler(48000, 16000) is not first
    for step in range(1, RESAMPLER_CACHE_SIZE + 4):
        resampler(1000 * step, 16000)  # small kernels (the rates share a factor of 1000)
    info = resampler.cache_info()
    assert info.maxsize == RESAMPLER_CACHE_SIZE and info.currsize == RESAMPLER_CACHE_SIZE
    resampler.cache_clear()


def test_kernel_size_is_torchaudios_and_large_kernels_are_not_kept(monkeypatch):
    for orig, new in PAIRS:
        assert audio._kernel_values(orig, new) == resampler(orig, new).kernel.numel()
    assert audio._kernel_values(44056, 16000) > audio.RESAMPLER_CACHE_MAX_VALUES
    monkeypatch.setattr(audio, "RESAMPLER_CACHE_MAX_VALUES", 1000)
    resampler.cache_clear()
    wave = torch.from_numpy(np.random.default_rng(3).uniform(-1, 1, 5000).astype(np.float32))
    out = audio._resample(wave, 44100, 16000)  # 76 000 values: built for the call only
    assert resampler.cache_info().currsize == 0
    assert torch.equal(_bits(out), _bits(taf.resample(wave, 44100, 16000)))


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_load_audio_equals_the_reference_decode(tmp_path, channels):
    rng = np.random.default_rng(channels)
    data = rng.uniform(-0.5, 0.5, (44100 // 2, channels)).astype(np.float32)
    data[::7] = -0.0  # the channel mean turns -0.0 into 0.0: the mono path must as well
    path = tmp_path / f"c{channels}.wav"
    sf.write(path, data, 44100, subtype="FLOAT")
    read, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = torch.from_numpy(np.ascontiguousarray(read.mean(axis=1, dtype=np.float32)))
    native = load_audio(str(path), 44100)
    assert torch.equal(_bits(native), _bits(mono))
    resampled = load_audio(str(path), 16000)
    assert torch.equal(_bits(resampled), _bits(taf.resample(mono, rate, 16000)))
    via_url = load_audio(f"file://{path}", 16000)  # fsspec file object, not a descriptor
    assert torch.equal(_bits(via_url), _bits(resampled))
    segment = load_audio(str(path), 16000, offset=0.1, duration=0.2)
    assert torch.equal(_bits(segment),
                       _bits(load_audio(f"file://{path}", 16000, offset=0.1, duration=0.2)))


def test_a_local_file_is_opened_once_and_truncation_is_still_found(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.wav"
    sf.write(good, rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 16000, subtype="PCM_16")
    raw = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(raw[: len(raw) // 2])
    opened = []
    real_open = os.open

    def counting_open(path, *args, **kwargs):
        opened.append(str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr("builtins.open", None)  # no Python file object for a local file
    assert load_audio(str(good)).shape == (8000,)
    with pytest.raises(AudioError, match="declares") as info:
        load_audio(str(cut))
    assert info.value.reason == "unreadable"
    assert opened == [str(good), str(cut)]
    monkeypatch.undo()
    with pytest.raises(AudioError) as info:
        load_audio(str(tmp_path))  # a folder
    assert info.value.reason == "missing"


def test_descriptor_errors_name_the_path_not_the_descriptor(tmp_path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))
    with pytest.raises(AudioError) as info:
        load_audio(str(bad))
    message = str(info.value)
    assert str(bad) in message and "Error opening" not in message
    assert info.value.reason == "unreadable"
    with pytest.raises(AudioError, match=str(bad)):
        audio.audio_info(str(bad))


def test_silence_check_equals_the_peak_magnitude_rule():
    rng = np.random.default_rng(4)
    for length in (1, 100, 4096, 4097, 20000):
        for where in {0, length // 2, length - 1}:
            for value in (0.0, 9e-7, -9e-7, 1e-6, -1e-6, 0.3, float("nan"), float("-inf")):
                wave = torch.from_numpy(rng.uniform(-5e-7, 5e-7, length).astype(np.float32))
                wave[where] = value
                assert audio.is_silent(wave) == (float(wave.abs().max()) < audio.SILENCE_PEAK)
    assert audio.is_silent(torch.zeros(0))
