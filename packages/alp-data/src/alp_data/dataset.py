"""Map-style dataset: manifest entry -> fbank features and one caption.

Randomness (crop window, caption choice, SpecAugment) is drawn from a generator seeded by
``(seed, epoch, index)``, so an item is the same whichever worker loads it and a resumed run
sees the same data. The epoch lives in shared memory so persistent workers see
:meth:`AudioCaptionDataset.set_epoch` calls made in the main process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch.utils.data import Dataset

from alp_core.config import ComponentConfig
from alp_core.errors import DataError
from alp_data.audio import crop_or_pad, load_audio
from alp_data.features import Fbank, SpecAugment
from alp_data.manifest import ManifestEntry

__all__ = ["AudioCaptionDataset", "AudioConfig", "BadClip", "item_generator"]


class AudioConfig(ComponentConfig):
    """Waveform handling before features (the paper: 16 kHz mono, clips over 30 s truncated).

    ``max_seconds`` truncates long clips (random window in training, the head in evaluation);
    clips under ``min_seconds`` are zero-padded up to it (the padding counts as valid frames).
    A clip shorter than one fbank window is always padded to one window.
    """

    sample_rate: int = Field(16000, gt=0)
    max_seconds: float = Field(30.0, gt=0)
    min_seconds: float = Field(0.0, ge=0)


@dataclass(frozen=True)
class BadClip:
    """A clip that could not be loaded; returned instead of raising so a long run skips it."""

    index: int
    id: str
    path: str
    error: str


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A torch generator seeded from ``(seed, epoch, index)`` (stable across processes)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(2)
    value = (int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator().manual_seed(value)


class AudioCaptionDataset(Dataset):
    """Items ``dict(index, id, features (T, F), num_frames, caption, captions, labels,
    duration)``, or a :class:`BadClip` for a clip whose audio is missing or undecodable."""

    def __init__(
        self,
        entries: list[ManifestEntry],
        *,
        audio: AudioConfig | None = None,
        fbank: Fbank | None = None,
        train: bool,
        seed: int = 0,
        spec_augment: SpecAugment | None = None,
    ) -> None:
        self.entries = list(entries)
        self.audio = audio or AudioConfig()
        self.fbank = fbank or Fbank()
        if self.fbank.config.sample_rate != self.audio.sample_rate:
            raise DataError(
                f"fbank sample_rate {self.fbank.config.sample_rate} differs from audio "
                f"sample_rate {self.audio.sample_rate}; set both to the same rate"
            )
        self.train = train
        self.seed = seed
        self.spec_augment = spec_augment
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's random draws; call before creating the epoch's iterator."""
        self._epoch[0] = int(epoch)

    def durations(self) -> list[float]:
        """Seconds of audio each item will carry (manifest duration clipped to the limits)."""
        low, high = self.audio.min_seconds, self.audio.max_seconds
        return [min(max(e.duration, low), high) for e in self.entries]

    def _load(self, entry: ManifestEntry, gen: torch.Generator) -> torch.Tensor:
        """Decode the clip, reading only a segment when the manifest says it is too long."""
        cfg = self.audio
        max_samples = int(round(cfg.max_seconds * cfg.sample_rate))
        # a clip inside a longer file (manifest offset > 0) reads only its own segment
        offset, span = entry.offset, (entry.duration if entry.offset > 0 else None)
        if entry.duration > cfg.max_seconds:
            span = cfg.max_seconds
            if self.train:
                slack = entry.duration - cfg.max_seconds
                offset += float(torch.rand((), generator=gen)) * slack
        wave = load_audio(entry.audio, cfg.sample_rate, offset=offset, duration=span)
        wave, _ = crop_or_pad(wave, max_samples, random_crop=self.train, generator=gen,
                              pad=False)
        min_samples = max(int(round(cfg.min_seconds * cfg.sample_rate)),
                          self.fbank.window_samples)
        if wave.shape[0] < min_samples:
            wave, _ = crop_or_pad(wave, min_samples, random_crop=False, pad=True)
        return wave

    def __getitem__(self, index: int) -> dict[str, Any] | BadClip:
        entry = self.entries[index]
        gen = item_generator(self.seed, self.epoch, index)
        choice = 0
        if self.train and len(entry.captions) > 1:
            choice = int(torch.randint(0, len(entry.captions), (1,), generator=gen))
        try:
            wave = self._load(entry, gen)
        except DataError as err:
            return BadClip(index=index, id=entry.id, path=entry.audio, error=str(err))
        feats = self.fbank(wave)
        if self.train and self.spec_augment is not None:
            feats = self.spec_augment(feats, generator=gen)
        return {
            "index": index,
            "id": entry.id,
            "features": feats,
            "num_frames": int(feats.shape[0]),
            "caption": entry.captions[choice],
            "captions": entry.captions,
            "labels": dict(entry.labels),
            "duration": wave.shape[0] / self.audio.sample_rate,
        }
