"""Map-style dataset: manifest entry -> fbank features and one caption.

Each item goes through the shared :class:`~alp_data.transform.ClipTransform`, whose random
draws (crop window, caption choice, SpecAugment) are seeded by ``(seed, epoch, clip id)``, so
an item is the same whichever worker loads it, a resumed run sees the same data, and a clip
read from tar shards gets the same features. The epoch lives in shared memory so persistent
workers see :meth:`AudioCaptionDataset.set_epoch` calls made in the main process.

A DataLoader asks for a whole batch at once through ``__getitems__``, which goes through
:meth:`ClipTransform.batch`: the batch's features are written once, into the tensor the
batch carries to the main process.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from alp_data.features import Fbank, SpecAugment
from alp_data.manifest import ManifestEntry
from alp_data.transform import (
    AudioConfig,
    BadClip,
    ClipBatch,
    ClipRequest,
    ClipTransform,
    clip_generator,
)

__all__ = ["AudioCaptionDataset", "AudioConfig", "BadClip", "clip_generator"]


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
        defer_features: bool = False,
    ) -> None:
        self.entries = list(entries)
        self.transform = ClipTransform(audio=audio, fbank=fbank, train=train, seed=seed,
                                       spec_augment=spec_augment, defer_features=defer_features)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def audio(self) -> AudioConfig:
        return self.transform.audio

    @property
    def fbank(self) -> Fbank:
        return self.transform.fbank

    @property
    def train(self) -> bool:
        return self.transform.train

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
        return [self.transform.seconds(e) for e in self.entries]

    def __getitem__(self, index: int) -> dict[str, Any] | BadClip:
        return self.transform(self.entries[index], self.epoch, index=index)

    def __getitems__(self, indices: list[int]) -> ClipBatch:
        """The items at ``indices`` (what ``self[i]`` gives), their features stacked."""
        return self.transform.batch([ClipRequest(self.entries[i], index=i) for i in indices],
                                    self.epoch)
