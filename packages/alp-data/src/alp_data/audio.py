"""Audio decoding to the model's input form: float32 mono at the target sample rate.

Decoding works without torchcodec/ffmpeg. PCM and float WAVs (16/24/32-bit integer, 32-bit
float) are decoded by :mod:`alp_data.wav` with numpy, to the floats libsndfile gives and
several times faster; every other format goes through soundfile: libsndfile reads a local
file itself (from a descriptor opened once, no Python callbacks per read), URLs go through
fsspec and shard members are decoded from bytes in memory (a WAV member straight from the
mapped shard). Resampling applies a sinc kernel cached per ``(orig, new)`` rate pair
(:func:`resampler`): the same numbers as ``torchaudio.functional.resample``, which builds the
kernel again for every clip.

Every failure becomes an :class:`AudioError` (a :class:`DataError`) naming the path, with a
short ``reason`` code from :data:`BAD_CLIP_REASONS`, which the dataset turns into a skipped
clip rather than a crashed run. Locations in messages pass through
:func:`~alp_data.scrub.scrub_url`, so URL credentials never reach a log or an error.

What is detected, and the reason given:

* ``missing``: no such local file, or a URL that answers "not found";
* ``backend``: a URL whose fsspec protocol is unknown or whose backend is not installed (the
  message names the protocol and fsspec's install hint, e.g. "Install s3fs to access S3");
* ``unreadable``: bytes soundfile cannot decode (corrupt, not audio, a FLAC cut mid-stream),
  a WAV whose ``data`` chunk declares more bytes than the file holds (a truncated download:
  libsndfile would silently shorten it), fewer frames decoded than the header announces, or
  any other I/O failure;
* ``empty``: no samples at all, or none in the requested segment (offset past the end);
* ``nonfinite``: NaN or infinite samples (float WAV/FLAC);
* ``sample_rate``: the file's native rate differs from ``expected_rate`` (the manifest's
  ``sample_rate``; a stale manifest), only when the caller passes it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import stat
import struct
from dataclasses import dataclass
from typing import BinaryIO

import fsspec
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf
import torchaudio.transforms as tat
from fsspec.registry import known_implementations
from fsspec.registry import registry as fsspec_registry

from alp_core.errors import DataError
from alp_data.manifest import is_url
from alp_data.scrub import safe_cause, scrub_url
from alp_data.wav import ReadAt, WavHeader, read_header
from alp_data.wav import decode as decode_wav

__all__ = ["BAD_CLIP_REASONS", "RESAMPLER_CACHE_MAX_VALUES", "RESAMPLER_CACHE_SIZE",
           "SILENCE_PEAK", "WHOLE_FILE_TOLERANCE", "AudioError", "AudioInfo", "audio_info",
           "crop_or_pad", "is_silent", "load_audio", "load_audio_bytes", "resampler"]

#: Why a clip was skipped (``BadClip.reason``):
#:
#: - ``missing``: the audio file or URL does not exist;
#: - ``unreadable``: corrupt, truncated, not audio, or an I/O failure while reading;
#: - ``empty``: no samples (or none in the clip's segment);
#: - ``silent``: every sample's magnitude is below :data:`SILENCE_PEAK` (digital silence);
#: - ``nonfinite``: NaN or infinite samples;
#: - ``sample_rate``: the file's rate is not the manifest's ``sample_rate`` (stale manifest);
#: - ``backend``: the URL's fsspec backend is not installed (or the protocol is unknown);
#: - ``tar_member``: a damaged member of a tar shard;
#: - ``row``: a manifest row that failed validation (see ``read_manifest(max_bad_rows=)``).
BAD_CLIP_REASONS = ("missing", "unreadable", "empty", "silent", "nonfinite", "sample_rate",
                    "backend", "tar_member", "row")

#: A decoded (mono) clip whose peak magnitude is below this is silent: digital silence, all
#: zeros or float noise far below one 16-bit PCM step (3.1e-5); ``AudioConfig.skip_silent``.
SILENCE_PEAK = 1e-6

#: Seconds: a clip from 0 s whose manifest duration is this close to its file's is the whole
#: file (durations are rounded); one shorter by more is its own segment, cut out of the file.
#: The clip transform and the shard writer both follow this rule, so a clip's audio is the
#: same read from files or from shards.
WHOLE_FILE_TOLERANCE = 0.05

#: Resampling kernels kept per process (least recently used first out): one per
#: ``(orig, new)`` rate pair, a corpus has a handful.
RESAMPLER_CACHE_SIZE = 16

#: Larger kernels (in float32 values) are built per call and not kept: an odd rate whose
#: ratio to the target reduces little (e.g. 44056 -> 16000) has a kernel of tens of MB.
#: 44.1/48/22.05/32/8 kHz -> 16 kHz need at most about 0.3 M values.
RESAMPLER_CACHE_MAX_VALUES = 4_000_000

# samples looked at first by is_silent before the whole wave
_SILENCE_PROBE = 4096

# local files are read through a descriptor with positioned reads (POSIX)
_PREAD = hasattr(os, "pread")

# errors soundfile and file objects raise on bad bytes (LibsndfileError is a RuntimeError)
_DECODE_ERRORS = (RuntimeError, OSError, ValueError, TypeError, EOFError, struct.error)


class AudioError(DataError):
    """Audio that cannot be used; ``reason`` is one of :data:`BAD_CLIP_REASONS`."""

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(scrub_url(message))
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (no decoding of samples)."""

    sample_rate: int
    num_frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate


def _backend_error(path: str, err: Exception) -> AudioError:
    """The URL's protocol has no usable fsspec backend: name it and how to install one."""
    proto = path.split("://", 1)[0].split("::")[-1]
    known = known_implementations.get(proto)
    if isinstance(err, ImportError):
        hint = (known or {}).get("err") or str(err)
        package = (known or {}).get("class", "").split(".")[0]
        if package and package != "fsspec":
            hint += f"; pip install {package}"
    elif known is None and proto not in fsspec_registry:
        hint = "fsspec knows no such protocol; check the URL's scheme"
    else:
        hint = str(err)
    return AudioError(f"cannot open {path}: no fsspec backend for protocol {proto!r} "
                      f"({hint})", "backend")


def _open(path: str):
    if is_url(path):
        try:
            return fsspec.open(path, "rb").open()
        except Exception as err:  # network stacks raise their own error types
            raise _failure(path, "cannot open audio", err) from safe_cause(err, path)
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}", "missing")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block


def _failure(path: str, what: str, err: Exception) -> AudioError:
    """The :class:`AudioError` for ``err`` met while reading ``path``, with its reason."""
    if isinstance(err, FileNotFoundError):
        return AudioError(f"audio file not found: {path}", "missing")
    if is_url(path) and (isinstance(err, ImportError) or (
            isinstance(err, ValueError) and "protocol" in str(err).lower())):
        return _backend_error(path, err)
    if isinstance(err, _DECODE_ERRORS):
        return AudioError(f"{what} {path}: {_detail(err)}")
    return AudioError(f"{what} {path}: {type(err).__name__}: {err}")


def _detail(err: Exception) -> str:
    """What went wrong; libsndfile's own text without its prefix, which names the descriptor
    or the file object (with its memory address) rather than the file."""
    if isinstance(err, sf.LibsndfileError):
        return err.error_string
    return str(err)


def audio_info(path: str) -> AudioInfo:
    """Read the header of ``path``; raises :class:`AudioError` naming the path on failure."""
    try:
        if _PREAD and not is_url(path):
            fd = _open_local(path)
            try:
                with sf.SoundFile(fd, closefd=False) as snd:
                    return AudioInfo(int(snd.samplerate), int(snd.frames), int(snd.channels))
            finally:
                os.close(fd)
        with _open(path) as handle:
            info = sf.info(handle)
    except DataError:
        raise
    except Exception as err:
        if not isinstance(err, _DECODE_ERRORS) and not is_url(path):
            raise
        raise _failure(path, "cannot read audio header of", err) from safe_cause(err, path)
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def load_audio(
    path: str,
    sample_rate: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    expected_rate: int | None = None,
    whole_within: float = 0.0,
) -> torch.Tensor:
    """Decode ``path`` to a float32 mono tensor ``(num_samples,)`` at ``sample_rate``.

    Channels are averaged; resampling gives ``torchaudio.functional.resample``'s samples (with
    a kernel cached per rate pair, :func:`resampler`). ``offset`` and
    ``duration`` (seconds, in the file's own time base) read only a segment, which keeps the
    cost of cropping long clips down; a segment from 0 s whose duration is within
    ``whole_within`` seconds of the file's is the whole file (a manifest's rounded duration
    does not cut the end off). ``expected_rate`` (the manifest's rate) makes a file at
    another native rate fail. Missing, corrupt, truncated, empty or non-finite audio raises
    :class:`AudioError` naming the path, with its ``reason`` (see the module docstring).
    """
    try:
        if _PREAD and not is_url(path):
            fd = _open_local(path)
            try:
                return _decode(fd, path, sample_rate, offset, duration, expected_rate,
                               *_fd_wav_header(fd), whole_within=whole_within)
            finally:
                os.close(fd)
        with _open(path) as handle:
            return _decode(handle, path, sample_rate, offset, duration, expected_rate,
                           *_wav_header(handle), whole_within=whole_within)
    except DataError:
        raise
    except Exception as err:
        if not isinstance(err, _DECODE_ERRORS) and not is_url(path):
            raise
        raise _failure(path, "cannot decode audio file", err) from safe_cause(err, path)


def load_audio_bytes(
    data: bytes | memoryview,
    name: str,
    sample_rate: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    expected_rate: int | None = None,
    whole_within: float = 0.0,
) -> torch.Tensor:
    """:func:`load_audio` for encoded bytes already in memory (e.g. a tar shard member);
    ``name`` (e.g. ``shard-000001.tar#clip.flac``) is what errors show."""
    try:
        header, read_at = _bytes_wav_header(memoryview(data).cast("B"))
        # soundfile reads a copy through callbacks; PCM WAV is read from the view itself
        handle = io.BytesIO(data) if header is None or header.sample is None else None
        return _decode(handle, name, sample_rate, offset, duration, expected_rate, header,
                       read_at, whole_within=whole_within)
    except DataError:
        raise
    except _DECODE_ERRORS as err:
        raise AudioError(f"cannot decode audio {name}: {_detail(err)}") from safe_cause(err, name)


def _open_local(path: str) -> int:
    """A read-only descriptor of the local file ``path``; ``missing`` unless it is a file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        if not os.path.isfile(path):  # no such file, a dangling link, a bad name
            raise AudioError(f"audio file not found: {path}", "missing") from None
        raise  # e.g. no permission: unreadable, as an open() of the file would say
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:  # a folder, a device
        os.close(fd)
        raise AudioError(f"audio file not found: {path}", "missing")
    return fd


def _wav_header(handle: BinaryIO) -> tuple[WavHeader | None, ReadAt | None]:
    """The WAV header of an open file object (:func:`alp_data.wav.read_header`), and how to
    read the file at a position; ``(None, None)`` when it is not a WAV or cannot seek. The
    handle is left where it was, for libsndfile."""
    try:
        start = handle.tell()
    except (OSError, AttributeError, io.UnsupportedOperation):
        return None, None

    def read_at(pos: int, count: int) -> bytes:
        handle.seek(pos)
        return handle.read(count)

    try:
        return read_header(read_at, start, lambda: handle.seek(0, io.SEEK_END)), read_at
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation, struct.error):
        return None, None
    finally:
        with contextlib.suppress(OSError, ValueError):  # soundfile then reports the handle
            handle.seek(start)


def _fd_wav_header(fd: int) -> tuple[WavHeader | None, ReadAt | None]:
    """:func:`_wav_header` of a local file's descriptor, by positioned reads (the
    descriptor's offset stays at 0 for libsndfile; no second open of the file)."""

    def read_at(pos: int, count: int) -> bytes:
        return os.pread(fd, count, pos)

    try:
        return read_header(read_at, 0, lambda: os.fstat(fd).st_size), read_at
    except (OSError, ValueError, struct.error):
        return None, None


def _bytes_wav_header(view: memoryview) -> tuple[WavHeader | None, ReadAt]:
    """:func:`_wav_header` of encoded bytes in memory, read by slicing ``view``."""

    def read_at(pos: int, count: int) -> memoryview:
        return view[pos:pos + count]

    try:
        return read_header(read_at, 0, lambda: len(view)), read_at
    except (ValueError, struct.error):
        return None, read_at


def _kernel_values(orig_freq: int, new_freq: int, lowpass_filter_width: int = 6,
                   rolloff: float = 0.99) -> int:
    """Values in torchaudio's sinc kernel for ``orig_freq -> new_freq`` (its defaults)."""
    gcd = math.gcd(orig_freq, new_freq)
    orig, new = orig_freq // gcd, new_freq // gcd
    width = math.ceil(lowpass_filter_width * orig / (min(orig, new) * rolloff))
    return new * (2 * width + orig)


def _resample(wave: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """``torchaudio.functional.resample(wave, orig_freq, new_freq)``, its kernel cached
    (:func:`resampler`) unless it is over :data:`RESAMPLER_CACHE_MAX_VALUES`."""
    if _kernel_values(orig_freq, new_freq) <= RESAMPLER_CACHE_MAX_VALUES:
        return resampler(orig_freq, new_freq)(wave)
    return taf.resample(wave, orig_freq, new_freq)


@functools.lru_cache(maxsize=RESAMPLER_CACHE_SIZE)
def resampler(orig_freq: int, new_freq: int) -> tat.Resample:
    """The float32 resampler ``orig_freq -> new_freq``, its sinc kernel built once per process
    and rate pair (bounded LRU cache); its output is bit-identical to
    ``torchaudio.functional.resample(wave, orig_freq, new_freq)`` on float32 waves."""
    return tat.Resample(int(orig_freq), int(new_freq), dtype=torch.float32)


def _decode(source: BinaryIO | int | None, name: str, sample_rate: int, offset: float,
            duration: float | None, expected_rate: int | None, header: WavHeader | None,
            read_at: ReadAt | None, *, whole_within: float = 0.0) -> torch.Tensor:
    """Decode ``source`` (a file object or a descriptor; ``None`` for bytes that ``read_at``
    reads) whose WAV header, if it is a WAV, is ``header``. PCM and float WAVs are decoded
    here (:mod:`alp_data.wav`), everything else by libsndfile."""
    if header is not None and header.truncated:
        raise AudioError(f"audio {name} is truncated: its WAV data chunk declares "
                         f"{header.declared} bytes but the file holds {header.present}",
                         "unreadable")
    if header is not None and header.sample is not None and read_at is not None:
        native = header.rate
        _check_rate(name, native, expected_rate)
        first, announced, _ = _span(native, header.frames, offset, duration, whole_within)
        data = decode_wav(header, read_at, first, announced)
    else:
        with sf.SoundFile(source, closefd=False) as snd:
            native = int(snd.samplerate)
            _check_rate(name, native, expected_rate)
            first, announced, to_end = _span(native, int(snd.frames), offset, duration,
                                             whole_within)
            if first:
                snd.seek(first)
            # mono comes as (n,), several channels as (n, channels); to the end if no duration
            data = snd.read(frames=-1 if to_end else announced, dtype="float32",
                            always_2d=False)
    if data.shape[0] == 0:
        raise AudioError(f"audio {name} holds no samples in the requested range "
                         f"(offset {offset} s); expected a non-empty clip", "empty")
    if data.shape[0] < announced:
        raise AudioError(f"audio {name} is truncated: decoded {data.shape[0]} of the "
                         f"{announced} frames its header announces", "unreadable")
    if not np.isfinite(data).all():
        raise AudioError(f"audio {name} decodes to NaN/inf samples", "nonfinite")
    if data.ndim == 1:
        # the channel mean of one channel, bit for bit (x + 0.0: -0.0 becomes 0.0 as there)
        mono = np.add(data, np.float32(0.0), out=data)
    else:
        mono = np.ascontiguousarray(data.mean(axis=1, dtype=np.float32))
    wave = torch.from_numpy(mono)
    if native != sample_rate:
        wave = _resample(wave, native, sample_rate)
    return wave.contiguous()


def _check_rate(name: str, native: int, expected_rate: int | None) -> None:
    if expected_rate is not None and native != expected_rate:
        raise AudioError(f"audio {name} is {native} Hz but the manifest says "
                         f"{expected_rate} Hz; regenerate the manifest (or set "
                         f"data.audio.check_sample_rate=false)", "sample_rate")


def _span(native: int, total: int, offset: float, duration: float | None,
          whole_within: float = 0.0) -> tuple[int, int, bool]:
    """``(first, count, to_end)``: the frames of ``offset`` s and ``duration`` s (to the end
    when ``None``, or from 0 s within ``whole_within`` s of the whole) in a file of ``total``
    frames at ``native`` Hz."""
    if duration is not None and offset <= 0 and \
            abs(total / native - duration) <= whole_within:
        duration = None
    first = min(max(0, int(round(offset * native))), total)
    count = total - first if duration is None else min(max(0, int(round(duration * native))),
                                                        total - first)
    return first, count, duration is None


def is_silent(wave: torch.Tensor) -> bool:
    """Whether every sample's magnitude is below :data:`SILENCE_PEAK`."""
    if wave.numel() == 0:
        return True
    if wave.dtype == torch.float32 and wave.device.type == "cpu" and not wave.requires_grad:
        samples = wave.numpy()
        head = samples[:_SILENCE_PROBE]  # most clips are loud within their first samples
        if max(float(head.max()), -float(head.min())) >= SILENCE_PEAK:
            return False
        return max(float(samples.max()), -float(samples.min())) < SILENCE_PEAK
    return float(wave.abs().max()) < SILENCE_PEAK


def crop_or_pad(
    wave: torch.Tensor,
    num_samples: int,
    *,
    random_crop: bool,
    generator: torch.Generator | None = None,
    pad: bool = True,
) -> tuple[torch.Tensor, int]:
    """Fit ``wave`` to ``num_samples``: crop when longer, zero-pad on the right when shorter.

    Returns ``(wave, valid_samples)`` where ``valid_samples`` counts real (unpadded) samples.
    Cropping takes a random window when ``random_crop`` (drawn from ``generator``) and the head
    otherwise. With ``pad=False`` a short wave is returned as is (the collator pads batches).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    length = int(wave.shape[-1])
    if length > num_samples:
        start = 0
        if random_crop:
            start = int(torch.randint(0, length - num_samples + 1, (1,), generator=generator))
        return wave[..., start:start + num_samples], num_samples
    if length < num_samples and pad:
        return torch.nn.functional.pad(wave, (0, num_samples - length)), length
    return wave, length
