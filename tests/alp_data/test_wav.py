"""WAV headers read by ALP and PCM decoded with numpy (``alp_data.wav``), against libsndfile
(soundfile) as the reference: the same floats, bit for bit, for every format decoded here;
every other format left to libsndfile; truncation told from the header."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from alp_data.audio import AudioError, load_audio, load_audio_bytes
from alp_data.wav import decode as decode_wav
from alp_data.wav import read_header

RATE = 16000


def _signal(frames: int, channels: int, subtype: str, seed: int = 0) -> np.ndarray:
    """Noise over the full range with the extremes in it (float: beyond +-1 and -0.0)."""
    rng = np.random.default_rng(seed)
    data = rng.uniform(-1.0, 1.0, (frames, channels))
    data[:4, 0] = [-1.0, 1.0 - 2.0 ** -23, 0.0, -2.0 ** -15]
    if subtype in ("FLOAT", "DOUBLE"):
        data[4:7, 0] = [3.5, -0.0, -7.25]
    return data.astype(np.float64)


def _header(path):
    blob = path.read_bytes()
    return read_header(lambda pos, count: blob[pos:pos + count], 0, lambda: len(blob)), blob


def _bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


DECODED = [("PCM_16", "pcm16"), ("PCM_24", "pcm24"), ("PCM_32", "pcm32"),
           ("FLOAT", "float32")]


@pytest.mark.parametrize("container", ["WAV", "WAVEX"])
@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize(("subtype", "sample"), DECODED)
def test_decoded_here_equals_libsndfile(tmp_path, container, channels, subtype, sample):
    path = tmp_path / f"x.{subtype}.wav"
    sf.write(path, _signal(2001, channels, subtype), RATE, subtype=subtype, format=container)
    header, blob = _header(path)
    assert header is not None and header.sample == sample  # decoded here, not by libsndfile
    assert (header.rate, header.channels, header.frames) == (RATE, channels, 2001)
    expected = sf.read(path, dtype="float32", always_2d=False)[0]
    got = decode_wav(header, lambda pos, count: blob[pos:pos + count], 0, header.frames)
    assert got.shape == expected.shape and np.array_equal(_bits(got), _bits(expected))
    # a span: frames 100 .. 100 + 333
    part = decode_wav(header, lambda pos, count: blob[pos:pos + count], 100, 333)
    assert np.array_equal(_bits(part), _bits(expected[100:433]))


@pytest.mark.parametrize(("subtype", "channels"), [("PCM_16", 1), ("PCM_24", 2),
                                                   ("FLOAT", 1), ("PCM_32", 3)])
@pytest.mark.parametrize(("offset", "duration"), [(0.0, None), (0.0123, 0.05), (0.1, None),
                                                  (0.12, 10.0)])
def test_load_audio_of_decoded_formats_is_the_libsndfile_mono(tmp_path, subtype, channels,
                                                              offset, duration):
    """``load_audio`` (from a path) and ``load_audio_bytes`` give the channel mean of what
    libsndfile reads for the segment, at 16 kHz and resampled from 22.05 kHz."""
    for rate in (RATE, 22050):
        path = tmp_path / f"x{rate}.wav"
        data = _signal(int(0.15 * rate), channels, subtype, seed=rate)
        if subtype == "FLOAT":
            data = np.clip(data, -1, 1)  # finite anyway; keep load_audio's finite check quiet
        sf.write(path, data, rate, subtype=subtype)
        start = round(offset * rate)
        frames = -1 if duration is None else round(duration * rate)
        ref = sf.read(path, start=start, frames=frames, dtype="float32", always_2d=True)[0]
        mono = torch.from_numpy(np.ascontiguousarray(ref.mean(axis=1, dtype=np.float32))
                                if channels > 1 else ref[:, 0] + np.float32(0.0))
        if rate != RATE:
            import torchaudio.functional as taf

            mono = taf.resample(mono, rate, RATE)
        for wave in (load_audio(str(path), RATE, offset=offset, duration=duration),
                     load_audio_bytes(path.read_bytes(), "x.wav", RATE, offset=offset,
                                      duration=duration),
                     load_audio_bytes(memoryview(path.read_bytes()), "x.wav", RATE,
                                      offset=offset, duration=duration)):
            assert wave.dtype == torch.float32 and torch.equal(wave, mono)


@pytest.mark.parametrize(("subtype", "container"), [("PCM_U8", "WAV"), ("DOUBLE", "WAV"),
                                                    ("ULAW", "WAV"), ("ALAW", "WAV"),
                                                    ("MS_ADPCM", "WAV"), ("PCM_16", "RF64"),
                                                    ("PCM_16", "FLAC")])
def test_other_formats_are_left_to_libsndfile(tmp_path, subtype, container):
    path = tmp_path / "x.wav"
    sf.write(path, np.clip(_signal(4000, 1, subtype), -1, 1), RATE, subtype=subtype,
             format=container)
    header, _ = _header(path)
    assert header is None or header.sample is None
    expected = sf.read(path, dtype="float32")[0]
    assert torch.equal(load_audio(str(path), RATE), torch.from_numpy(expected + np.float32(0)))
    assert torch.equal(load_audio_bytes(path.read_bytes(), "x", RATE),
                       torch.from_numpy(expected + np.float32(0)))


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(name: bytes, data: bytes, size: int | None = None) -> bytes:
    pad = b"\0" if len(data) % 2 else b""
    return name + struct.pack("<I", len(data) if size is None else size) + data + pad


def _fmt(code: int = 1, channels: int = 1, bits: int = 16) -> bytes:
    align = channels * bits // 8
    return _chunk(b"fmt ", struct.pack("<HHIIHH", code, channels, RATE, RATE * align, align,
                                       bits))


def test_chunks_before_the_data_are_walked_with_their_pad_byte(tmp_path):
    samples = np.array([0, 1, -1, 32767, -32768, 1234], dtype="<i2")
    blob = _riff(_chunk(b"junk", b"abc"), _fmt(), _chunk(b"LIST", b"INFOxxxx"),
                 _chunk(b"data", samples.tobytes()), _chunk(b"tail", b"after the data"))
    path = tmp_path / "odd.wav"
    path.write_bytes(blob)
    header, _ = _header(path)
    assert header is not None and header.sample == "pcm16" and header.frames == 6
    expected = sf.read(path, dtype="float32")[0]
    assert np.array_equal(expected, samples / np.float32(32768))  # libsndfile agrees
    assert torch.equal(load_audio(str(path), RATE), torch.from_numpy(expected))


def test_headers_left_to_libsndfile(tmp_path):
    samples = np.arange(-50, 50, dtype="<i2").tobytes()
    open_size = _riff(_fmt(), _chunk(b"data", samples, size=0xFFFFFFFF))
    fmt_after = _riff(_chunk(b"data", samples), _fmt())
    odd_align = _riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, RATE, RATE * 4, 4, 16)),
                      _chunk(b"data", samples))
    for blob in (open_size, fmt_after, odd_align):
        header = read_header(lambda pos, count, b=blob: b[pos:pos + count], 0,
                             lambda b=blob: len(b))
        assert header is not None and header.sample is None
    wave = load_audio_bytes(open_size, "open.wav", RATE)  # libsndfile reads to the end
    assert torch.equal(wave, torch.arange(-50, 50) / 32768.0)


def test_truncated_wavs_are_told_from_the_header(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, _signal(8000, 2, "PCM_16"), RATE, subtype="PCM_16")
    blob = path.read_bytes()
    path.write_bytes(blob[:-1001])
    header, _ = _header(path)
    assert header.truncated and header.declared - header.present == 1001
    with pytest.raises(AudioError, match="truncated.*declares 32000 bytes.*holds 30999"):
        load_audio(str(path), RATE)
    with pytest.raises(AudioError, match="truncated"):
        load_audio_bytes(blob[:-1001], "cut.wav", RATE)


def test_non_finite_float_wav_is_refused(tmp_path):
    path = tmp_path / "nan.wav"
    data = np.zeros(1000, np.float32)
    data[500] = np.nan
    sf.write(path, data, RATE, subtype="FLOAT")
    assert _header(path)[0].sample == "float32"
    with pytest.raises(AudioError, match="NaN") as err:
        load_audio(str(path), RATE)
    assert err.value.reason == "nonfinite"


def test_a_mapped_shard_member_is_read_without_a_copy_of_the_file(tmp_path):
    """Bytes from a memory map (as a tar shard's member) decode through their view."""
    import mmap

    path = tmp_path / "m.wav"
    sf.write(path, _signal(3000, 1, "PCM_16"), RATE, subtype="PCM_16")
    with open(path, "rb") as handle:
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mapped)
        wave = load_audio_bytes(view, "m.wav", RATE)
        del view
        mapped.close()
    assert torch.equal(wave, load_audio(str(path), RATE))
