"""RIFF/WAVE headers read by ALP itself, and plain PCM samples decoded with numpy.

libsndfile converts PCM to float through reads of a few KB and a per-sample loop: about
150 us for a 6.5 s, 16 kHz 16-bit clip, several times what numpy takes over the same bytes
(one read, one conversion). :func:`read_header` walks a WAV file's chunks; when its format is
one numpy decodes to exactly the floats libsndfile gives (:data:`DECODED_HERE`: integer PCM
of 16, 24 or 32 bits and 32-bit IEEE float, little-endian, plain or
``WAVE_FORMAT_EXTENSIBLE``), :func:`decode` reads the frames asked for. Every other file
(8-bit, 64-bit float, A-law, ADPCM, big-endian RIFX, RF64, a data chunk whose size is left
open, a ``fmt`` chunk after the data) is left to libsndfile.

libsndfile's float conversion (``pcm.c``) multiplies each integer, as a float, by
``1 / 0x8000`` (16-bit) or ``1 / 0x80000000`` (24-bit placed in the high bytes of 32, and
32-bit); both are powers of two, so the products are the same floats numpy computes. Float
samples are copied as they are (no normalisation, as libsndfile's default). The tests
compare every format, mono and multichannel, at offsets, against soundfile.

The header also tells a truncated file: a ``data`` chunk that declares more bytes than the
file holds (libsndfile would read such a file without complaint, a shorter clip).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["DECODED_HERE", "WavHeader", "decode", "read_header"]

#: Sample formats :func:`decode` handles: name -> bytes per sample.
DECODED_HERE = {"pcm16": 2, "pcm24": 3, "pcm32": 4, "float32": 4}

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
# the 12 bytes after the format code in KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT GUIDs
_GUID_TAIL = b"\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_OPEN_SIZES = (0, 0xFFFFFFFF)  # data sizes of streamed WAVs: "until the end of the file"
_MAX_CHUNKS = 64

ReadAt = Callable[[int, int], bytes | memoryview]


@dataclass(frozen=True)
class WavHeader:
    """What a RIFF/WAVE file's chunks say.

    ``declared``: bytes its ``data`` chunk declares; ``present``: bytes the file holds from
    the start of that chunk's samples to its end; ``data_start``: where the samples begin.
    ``sample`` is a key of :data:`DECODED_HERE` when :func:`decode` can read the file (with
    ``rate`` and ``channels`` from its ``fmt`` chunk), else ``None``.
    """

    declared: int
    present: int
    data_start: int
    sample: str | None = None
    rate: int = 0
    channels: int = 0

    @property
    def truncated(self) -> bool:
        """The ``data`` chunk declares more bytes than the file holds."""
        return self.declared not in _OPEN_SIZES and self.present < self.declared

    @property
    def frame_bytes(self) -> int:
        return DECODED_HERE[self.sample] * self.channels if self.sample else 0

    @property
    def frames(self) -> int:
        """Frames in the ``data`` chunk (decodable files only)."""
        return self.declared // self.frame_bytes if self.sample else 0


def read_header(read_at: ReadAt, start: int, size: Callable[[], int]) -> WavHeader | None:
    """The header of the WAV file that starts at ``start`` and ends at ``size()``, read with
    ``read_at(pos, count)``; ``None`` when it is not a RIFF/WAVE file with a ``data``
    chunk."""
    head = bytes(read_at(start, 12))
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    total = size()
    pos = start + 12
    fmt: tuple[str, int, int] | None = None
    for _ in range(_MAX_CHUNKS):  # fmt, LIST, fact, ... then data
        chunk = bytes(read_at(pos, 8))
        if len(chunk) < 8:
            return None
        declared = struct.unpack("<I", chunk[4:])[0]
        if chunk[:4] == b"data":
            data_start = pos + 8
            header = WavHeader(declared, total - data_start, data_start)
            if fmt is None or declared in _OPEN_SIZES:
                return header
            sample, rate, channels = fmt
            return WavHeader(declared, total - data_start, data_start, sample, rate, channels)
        if chunk[:4] == b"fmt ":
            fmt = _sample_format(bytes(read_at(pos + 8, min(declared, 40))))
        pos += 8 + declared + (declared & 1)
    return None


def _sample_format(body: bytes) -> tuple[str, int, int] | None:
    """``(sample, rate, channels)`` of a ``fmt`` chunk's body when :func:`decode` reads it."""
    if len(body) < 16:
        return None
    code, channels, rate, _, block_align, bits = struct.unpack("<HHIIHH", body[:16])
    if code == _EXTENSIBLE:
        if len(body) < 40 or body[28:40] != _GUID_TAIL:
            return None
        code = struct.unpack("<I", body[24:28])[0]
    if code == _PCM and bits in (16, 24, 32):
        sample = f"pcm{bits}"
    elif code == _FLOAT and bits == 32:
        sample = "float32"
    else:
        return None
    if channels < 1 or rate < 1 or block_align != channels * DECODED_HERE[sample]:
        return None
    return sample, rate, channels


def decode(header: WavHeader, read_at: ReadAt, first: int, count: int) -> np.ndarray:
    """Frames ``first .. first + count`` (fewer if the file ends sooner) as float32, ``(n,)``
    for mono and ``(n, channels)`` otherwise, the floats libsndfile gives."""
    if header.sample is None:
        raise ValueError("this WAV format is decoded by libsndfile, not here")
    frame = header.frame_bytes
    raw = read_at(header.data_start + first * frame, count * frame)
    n = len(raw) // frame
    width = DECODED_HERE[header.sample]
    if header.sample == "pcm16":
        out = np.frombuffer(raw, "<i2", n * header.channels).astype(np.float32)
        out *= np.float32(1.0 / 0x8000)
    elif header.sample == "pcm24":
        wide = np.zeros((n * header.channels, 4), np.uint8)  # the 24 bits in the high bytes
        wide[:, 1:] = np.frombuffer(raw, np.uint8, n * frame).reshape(-1, width)
        out = wide.view("<i4").reshape(-1).astype(np.float32)
        out *= np.float32(1.0 / 0x80000000)
    elif header.sample == "pcm32":
        out = np.frombuffer(raw, "<i4", n * header.channels).astype(np.float32)
        out *= np.float32(1.0 / 0x80000000)
    else:
        out = np.frombuffer(raw, "<f4", n * header.channels).astype(np.float32)
    return out if header.channels == 1 else out.reshape(n, header.channels)
