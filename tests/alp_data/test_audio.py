"""Audio decoding: mono mix, resampling, segments, errors naming the path; crop/pad."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from alp_core.errors import DataError
from alp_data.audio import audio_info, crop_or_pad, load_audio


def _sine(freq, seconds, rate, amp=0.5):
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(wave: torch.Tensor, rate: int) -> float:
    spec = np.abs(np.fft.rfft(wave.numpy() * np.hanning(len(wave))))
    return float(np.argmax(spec) * rate / len(wave))


@pytest.mark.parametrize("fmt", ["FLAC", "WAV"])
def test_mono_16k_round_trip(tmp_path, fmt):
    wave = _sine(440.0, 0.5, 16000)
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, wave, 16000, format=fmt, subtype="PCM_16")
    out = load_audio(str(path), 16000)
    assert out.dtype == torch.float32 and out.shape == (8000,)
    np.testing.assert_allclose(out.numpy(), wave, atol=1e-4)


def test_stereo_44k_is_mixed_and_resampled(tmp_path):
    left, right = _sine(1000.0, 1.0, 44100, 0.4), _sine(1000.0, 1.0, 44100, 0.2)
    path = tmp_path / "st.flac"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    out = load_audio(str(path), 16000)
    assert out.shape == (16000,)
    assert abs(_peak_hz(out, 16000) - 1000.0) <= 2.0
    mid = out[2000:-2000]
    assert float(mid.abs().max()) == pytest.approx(0.3, abs=0.01)  # mean of 0.4 and 0.2
    info = audio_info(str(path))
    assert (info.sample_rate, info.num_frames, info.channels) == (44100, 44100, 2)
    assert info.duration == pytest.approx(1.0)


def test_segment_read(tmp_path):
    wave = np.arange(16000, dtype=np.float32) / 32768.0
    path = tmp_path / "ramp.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    out = load_audio(str(path), 16000, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(out.numpy(), wave[4000:12000])


def test_file_url_goes_through_fsspec(tmp_path):
    path = tmp_path / "u.wav"
    sf.write(path, _sine(300.0, 0.1, 16000), 16000)
    assert load_audio(f"file://{path}", 16000).shape == (1600,)


def test_missing_corrupt_and_empty_files_name_the_path(tmp_path):
    missing = tmp_path / "missing.flac"
    with pytest.raises(DataError, match="not found: .*missing.flac"):
        load_audio(str(missing))
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC\x00garbage" * 10)
    with pytest.raises(DataError, match="corrupt.flac"):
        load_audio(str(corrupt))
    with pytest.raises(DataError, match="corrupt.flac"):
        audio_info(str(corrupt))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="empty.wav holds no samples"):
        load_audio(str(empty))


def test_crop_or_pad():
    wave = torch.arange(10, dtype=torch.float32)
    out, valid = crop_or_pad(wave, 4, random_crop=False)
    assert out.tolist() == [0, 1, 2, 3] and valid == 4
    gen = torch.Generator().manual_seed(3)
    out, valid = crop_or_pad(wave, 4, random_crop=True, generator=gen)
    start = int(out[0])
    assert out.tolist() == list(range(start, start + 4)) and valid == 4
    crops = {int(crop_or_pad(wave, 4, random_crop=True,
                             generator=torch.Generator().manual_seed(s))[0][0])
             for s in range(20)}
    assert len(crops) > 1 and crops <= set(range(7))
    out, valid = crop_or_pad(wave, 13, random_crop=True)
    assert out.shape == (13,) and valid == 10 and out[10:].abs().sum() == 0
    out, valid = crop_or_pad(wave, 13, random_crop=True, pad=False)
    assert out.shape == (10,) and valid == 10


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_a_memoryview_decodes_like_the_bytes_it_views(tmp_path, fmt):
    """Shard members read from a memory map come as memoryviews, decoded without a copy of
    the whole: the same samples (and segment) as the bytes, and the same truncation error."""
    from alp_data.audio import AudioError, load_audio_bytes

    rng = np.random.default_rng(1)
    path = tmp_path / f"c.{fmt.lower()}"
    sf.write(path, (0.3 * rng.standard_normal(22050)).astype(np.float32), 22050, format=fmt)
    data = path.read_bytes()
    padded = memoryview(b"junk" + data + b"tail")[4:-4]  # a view into a larger buffer
    for kwargs in ({}, {"offset": 0.25, "duration": 0.5}):
        expected = load_audio_bytes(data, "c", 16000, **kwargs)
        assert torch.equal(load_audio_bytes(padded, "c", 16000, **kwargs), expected)
    if fmt == "WAV":
        with pytest.raises(AudioError, match="truncated") as err:
            load_audio_bytes(memoryview(data)[:-1000], "cut.wav", 16000)
        assert err.value.reason == "unreadable"
