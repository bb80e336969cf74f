"""Audio decoding to the model's input form: float32 mono at the target sample rate.

Decoding goes through soundfile (local files, or fsspec for URLs) so it works without
torchcodec/ffmpeg; every failure becomes a :class:`DataError` naming the path, which the
dataset turns into a skipped clip rather than a crashed run.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO

import fsspec
import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

from alp_core.errors import DataError
from alp_data.manifest import is_url

__all__ = ["AudioInfo", "audio_info", "crop_or_pad", "load_audio", "load_audio_bytes"]


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of an audio file (no decoding of samples)."""

    sample_rate: int
    num_frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.num_frames / self.sample_rate


def _open(path: str):
    if is_url(path):
        return fsspec.open(path, "rb").open()
    if not os.path.isfile(path):
        raise DataError(f"audio file not found: {path}")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block


def audio_info(path: str) -> AudioInfo:
    """Read the header of ``path``; raises :class:`DataError` naming the path on failure."""
    try:
        with _open(path) as handle:
            info = sf.info(handle)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise DataError(f"cannot read audio header of {path}: {err}") from err
    return AudioInfo(int(info.samplerate), int(info.frames), int(info.channels))


def load_audio(
    path: str,
    sample_rate: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode ``path`` to a float32 mono tensor ``(num_samples,)`` at ``sample_rate``.

    Channels are averaged; resampling uses ``torchaudio.functional.resample``. ``offset`` and
    ``duration`` (seconds, in the file's own time base) read only a segment, which keeps the
    cost of cropping long clips down. Missing, corrupt, empty or non-finite audio raises
    :class:`DataError` naming the path.
    """
    try:
        with _open(path) as handle:
            return _decode(handle, path, sample_rate, offset, duration)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise DataError(f"cannot decode audio file {path}: {err}") from err


def load_audio_bytes(
    data: bytes,
    name: str,
    sample_rate: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """:func:`load_audio` for encoded bytes already in memory (e.g. a tar shard member);
    ``name`` (e.g. ``shard-000001.tar#clip.flac``) is what errors show."""
    try:
        return _decode(io.BytesIO(data), name, sample_rate, offset, duration)
    except DataError:
        raise
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise DataError(f"cannot decode audio {name}: {err}") from err


def _decode(handle: BinaryIO, name: str, sample_rate: int, offset: float,
            duration: float | None) -> torch.Tensor:
    with sf.SoundFile(handle) as snd:
        native = int(snd.samplerate)
        start = max(0, int(round(offset * native)))
        if start:
            snd.seek(min(start, snd.frames))
        frames = -1 if duration is None else max(0, int(round(duration * native)))
        data = snd.read(frames=frames, dtype="float32", always_2d=True)
    if data.shape[0] == 0:
        raise DataError(f"audio {name} holds no samples in the requested range "
                        f"(offset {offset} s); expected a non-empty clip")
    wave = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1, dtype=np.float32)))
    if not torch.isfinite(wave).all():
        raise DataError(f"audio {name} decodes to NaN/inf samples")
    if native != sample_rate:
        wave = taf.resample(wave, native, sample_rate)
    return wave.contiguous()


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
