"""The per-clip transform every data path shares: decode, resample, crop, fbank, SpecAugment.

Map-style datasets (clips by index from files) and shard streams (clips from tar members)
both call :class:`ClipTransform`, so a clip becomes the same features whichever way it is
read. Its random draws (crop window, caption choice, SpecAugment masks) come from a generator
seeded by ``(seed, epoch, clip id)`` -- not by the clip's position -- so a clip is transformed
the same in any worker, any order, after a resume, and from files or from shards.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import Field

from alp_core.config import ComponentConfig
from alp_core.errors import DataError
from alp_data.audio import (
    BAD_CLIP_REASONS,
    SILENCE_PEAK,
    WHOLE_FILE_TOLERANCE,
    AudioError,
    crop_or_pad,
    is_silent,
    load_audio,
    load_audio_bytes,
)
from alp_data.buffers import Lease, leased_batch_tensor
from alp_data.features import Fbank, SpecAugment
from alp_data.manifest import ManifestEntry
from alp_data.scrub import scrub_url

__all__ = ["BAD_CLIP_REASONS", "AudioConfig", "BadClip", "ClipBatch", "ClipRequest",
           "ClipTransform", "clip_generator"]


class AudioConfig(ComponentConfig):
    """Waveform handling before features (the paper: 16 kHz mono, clips over 30 s truncated).

    ``max_seconds`` truncates long clips (random window in training, the head in evaluation);
    clips under ``min_seconds`` are zero-padded up to it (the padding counts as valid frames).
    A clip shorter than one fbank window is always padded to one window.
    """

    sample_rate: int = Field(16000, gt=0)
    max_seconds: float = Field(30.0, gt=0)
    min_seconds: float = Field(0.0, ge=0)
    skip_silent: bool = Field(
        True, description=f"skip clips whose decoded samples all lie below {SILENCE_PEAK} in "
        "magnitude (digital silence) as bad clips with reason 'silent'")
    check_sample_rate: bool = Field(
        True, description="skip clips whose file rate differs from the manifest's sample_rate "
        "(a stale manifest) as bad clips with reason 'sample_rate'")


@dataclass(frozen=True)
class BadClip:
    """A clip that could not be loaded; returned instead of raising so a long run skips it.

    ``path`` is where it was looked for (a file, or ``shard.tar#member`` for a shard member;
    URL credentials scrubbed), ``error`` says why, ``reason`` is its short code from
    :data:`BAD_CLIP_REASONS` ("" when made by older code or restored from an older run).
    """

    index: int
    id: str
    path: str
    error: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ClipRequest:
    """One clip for :meth:`ClipTransform.batch`: its entry, its index (position) in the data,
    its encoded audio when already in memory, and the name errors give it."""

    entry: ManifestEntry
    index: int = -1
    data: bytes | memoryview | None = None
    where: str | None = None


class ClipBatch(list):
    """The items of one batch, in order (item dicts and :class:`BadClip`), as
    :meth:`ClipTransform.batch` makes them: ``features`` ``(G, T_max, F)`` holds the G good
    items' features zero-padded (row g: the g-th item dict, whose ``features`` is a view of
    that row's frames) and ``lengths`` ``(G,)`` their frame counts. Any collate function
    taking a list of items works on it; :class:`~alp_data.collate.Collator` uses the stacked
    tensor as it is. In a loader worker ``features`` may lie in a reused shared-memory
    segment, lent under ``lease`` (see :mod:`alp_data.buffers`).

    With features deferred (``ClipTransform(defer_features=True)``) ``features`` is None and
    the batch holds what computes them later instead (see :mod:`alp_data.deferred`):
    ``waves`` ``(G, S_max)`` the decoded waves zero-padded (in the lent segment),
    ``wave_lengths`` ``(G,)`` their sample counts, and, when SpecAugment applies,
    ``time_mask`` ``(G, T_max)`` and ``freq_mask`` ``(G, F)`` (True on masked cells).
    ``lengths`` are still the frame counts, and items carry ``num_frames`` but no features.
    """

    def __init__(self, items: list[dict[str, Any] | BadClip], features: torch.Tensor | None,
                 lengths: torch.Tensor, lease: Lease | None = None, *,
                 waves: torch.Tensor | None = None, wave_lengths: torch.Tensor | None = None,
                 time_mask: torch.Tensor | None = None, freq_mask: torch.Tensor | None = None
                 ) -> None:
        super().__init__(items)
        self.features = features
        self.lengths = lengths
        self.lease = lease
        self.waves = waves
        self.wave_lengths = wave_lengths
        self.time_mask = time_mask
        self.freq_mask = freq_mask


def clip_generator(seed: int, epoch: int, clip_id: str) -> torch.Generator:
    """A torch generator seeded from ``(seed, epoch, clip id)`` (stable across processes)."""
    digest = hashlib.blake2b(clip_id.encode("utf-8"), digest_size=8).digest()
    key = int.from_bytes(digest, "little")
    words = [seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, key & 0xFFFFFFFF, key >> 32]
    state = np.random.SeedSequence(words).generate_state(2)
    value = (int(state[0]) << 32 | int(state[1])) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator().manual_seed(value)


class _ClipRandom:
    """The clip's generator (:func:`clip_generator`), made on first use: a clip that draws
    nothing (one caption, no crop, no SpecAugment) skips seeding one. Draws come in the
    same order from the same seed either way, so the outputs do not change."""

    __slots__ = ("_gen", "_key")

    def __init__(self, seed: int, epoch: int, clip_id: str) -> None:
        self._key = (seed, epoch, clip_id)
        self._gen: torch.Generator | None = None

    def __call__(self) -> torch.Generator:
        if self._gen is None:
            self._gen = clip_generator(*self._key)
        return self._gen


class ClipTransform:
    """Callable ``(entry, epoch, data=None) -> item dict | BadClip``.

    ``data`` holds the clip's encoded audio when it is already in memory (a shard member);
    otherwise ``entry.audio`` is read. Items: ``index, id, features (T, F), num_frames,
    caption, captions, labels, duration``. Training (``train=True``) crops a random window,
    picks one caption at random and applies SpecAugment when given; evaluation takes the head
    and the first caption.

    Audio that cannot be used gives a :class:`BadClip` whose ``reason`` says why (missing,
    unreadable, empty, nonfinite, backend; sample_rate and silent per :class:`AudioConfig`);
    the silence test looks at the segment read, so a long file is judged by its window.

    With ``defer_features`` :meth:`batch` stops after decoding: the batch carries the waves
    and the drawn SpecAugment masks, and :func:`alp_data.deferred.batch_features` computes
    the same features later, where the model runs (e.g. on its GPU).
    """

    def __init__(self, *, audio: AudioConfig | None = None, fbank: Fbank | None = None,
                 train: bool, seed: int = 0, spec_augment: SpecAugment | None = None,
                 defer_features: bool = False) -> None:
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
        self.defer_features = defer_features

    def seconds(self, entry: ManifestEntry) -> float:
        """Seconds of audio the item will carry (the manifest duration within the limits)."""
        return min(max(entry.duration, self.audio.min_seconds), self.audio.max_seconds)

    def _wave(self, entry: ManifestEntry, rand: _ClipRandom, data: bytes | memoryview | None,
              where: str) -> torch.Tensor:
        """Decode the clip, reading only a segment when the manifest says it is too long."""
        cfg = self.audio
        max_samples = int(round(cfg.max_seconds * cfg.sample_rate))
        # a clip inside a longer file reads only its own segment (at any offset: a window
        # from 0 s too); a duration of 0 (unknown) reads the whole file
        offset, span = entry.offset, (entry.duration if entry.duration > 0 else None)
        whole = WHOLE_FILE_TOLERANCE  # the shard writer's rule: a rounded duration is whole
        if entry.duration > cfg.max_seconds:
            span, whole = cfg.max_seconds, 0.0
            if self.train:
                slack = entry.duration - cfg.max_seconds
                offset += float(torch.rand((), generator=rand())) * slack
        expected = entry.sample_rate if cfg.check_sample_rate else None
        if data is None:
            wave = load_audio(where, cfg.sample_rate, offset=offset, duration=span,
                              expected_rate=expected, whole_within=whole)
        else:
            wave = load_audio_bytes(data, where, cfg.sample_rate, offset=offset, duration=span,
                                    expected_rate=expected, whole_within=whole)
        if cfg.skip_silent and is_silent(wave):
            raise AudioError(f"audio {where} is silent (every sample below {SILENCE_PEAK} in "
                             "magnitude); set data.audio.skip_silent=false to keep silent clips",
                             "silent")
        if wave.shape[0] > max_samples:  # a random window in training (crop_or_pad draws)
            wave, _ = crop_or_pad(wave, max_samples, random_crop=self.train,
                                  generator=rand() if self.train else None, pad=False)
        min_samples = max(int(round(cfg.min_seconds * cfg.sample_rate)),
                          self.fbank.window_samples)
        if wave.shape[0] < min_samples:
            wave, _ = crop_or_pad(wave, min_samples, random_crop=False, pad=True)
        return wave

    def _prepare(self, entry: ManifestEntry, epoch: int, data: bytes | memoryview | None,
                 where: str | None, index: int
                 ) -> tuple[dict[str, Any], torch.Tensor, _ClipRandom] | BadClip:
        """Decode one clip: ``(item without features, wave, its random source)`` or why not."""
        where = where or entry.audio
        rand = _ClipRandom(self.seed, epoch, entry.id)
        choice = 0
        if self.train and len(entry.captions) > 1:
            choice = int(torch.randint(0, len(entry.captions), (1,), generator=rand()))
        try:
            wave = self._wave(entry, rand, data, where)
        except DataError as err:
            return BadClip(index=index, id=entry.id, path=scrub_url(where),
                           error=scrub_url(str(err)),
                           reason=getattr(err, "reason", "unreadable"))
        item = {
            "index": index,
            "id": entry.id,
            "caption": entry.captions[choice],
            "captions": entry.captions,
            "labels": dict(entry.labels),
            "duration": wave.shape[0] / self.audio.sample_rate,
        }
        return item, wave, rand

    def __call__(self, entry: ManifestEntry, epoch: int, *,
                 data: bytes | memoryview | None = None,
                 where: str | None = None, index: int = -1) -> dict[str, Any] | BadClip:
        """Transform one clip; ``where`` names it in errors (default: ``entry.audio``)."""
        got = self._prepare(entry, epoch, data, where, index)
        if isinstance(got, BadClip):
            return got
        item, wave, rand = got
        feats = self.fbank(wave, generator=self._dither(entry.id, epoch))
        if self.train and self.spec_augment is not None:
            feats = self.spec_augment(feats, generator=rand())
        item["features"] = feats
        item["num_frames"] = int(feats.shape[0])
        return item

    def _dither(self, clip_id: str, epoch: int) -> torch.Generator | None:
        """The dither noise's generator of a clip: its own stream, seeded by (seed, epoch,
        clip id), apart from the crop/caption/SpecAugment one (None without dither)."""
        if self.fbank.config.dither == 0.0:
            return None
        return clip_generator(self.seed, epoch, f"{clip_id}\0dither")

    def batch(self, clips: Sequence[ClipRequest | BadClip], epoch: int) -> ClipBatch:
        """Transform a batch (a :class:`BadClip` passes through, in its place): every item
        equals ``self(...)`` of its clip, the features stacked in one zero-padded tensor
        (reused shared memory in a loader worker; see :class:`ClipBatch`)."""
        items: list[dict[str, Any] | BadClip] = []
        good: list[tuple[dict[str, Any], torch.Tensor, _ClipRandom]] = []
        for clip in clips:
            got = clip if isinstance(clip, BadClip) else self._prepare(
                clip.entry, epoch, clip.data, clip.where, clip.index)
            if isinstance(got, BadClip):
                items.append(got)
            else:
                items.append(got[0])
                good.append(got)
        waves = [wave for _, wave, _ in good]
        augment = self.spec_augment if self.train else None
        if self.defer_features:
            return self._deferred(items, good, waves, augment)
        frames = max((self.fbank.num_frames(int(w.shape[0])) for w in waves), default=0)
        out, lease = leased_batch_tensor(len(waves), frames, self.fbank.num_mel_bins)
        features, lengths = self.fbank.padded(waves, out=out, generators=[
            self._dither(item["id"], epoch) for item, _, _ in good])
        for row, (item, _, rand) in enumerate(good):
            feats = features[row, :int(lengths[row])]
            if augment is not None:
                augment(feats, generator=rand(), inplace=True)
            item["features"] = feats
            item["num_frames"] = int(feats.shape[0])
        return ClipBatch(items, features, lengths, lease)

    def _deferred(self, items: list[dict[str, Any] | BadClip],
                  good: list[tuple[dict[str, Any], torch.Tensor, _ClipRandom]],
                  waves: list[torch.Tensor], augment: SpecAugment | None) -> ClipBatch:
        """The batch without features: the waves zero-padded (in the lent segment in a
        worker), frame counts, and the SpecAugment masks drawn as :meth:`SpecAugment.__call__`
        would draw them (the same generator, the same order)."""
        sizes = [int(w.shape[0]) for w in waves]
        out, lease = leased_batch_tensor(len(waves), max(sizes, default=0))
        for row, (wave, size) in enumerate(zip(waves, sizes, strict=True)):
            out[row, :size] = wave
            out[row, size:] = 0.0
        counts = [self.fbank.num_frames(size) for size in sizes]
        bins = self.fbank.num_mel_bins
        time_mask = freq_mask = None
        if augment is not None:
            time_mask = torch.zeros(len(waves), max(counts, default=0), dtype=torch.bool)
            freq_mask = torch.zeros(len(waves), bins, dtype=torch.bool)
            for row, ((_, _, rand), count) in enumerate(zip(good, counts, strict=True)):
                for mask in augment.draw(count, bins, rand()) or ():
                    target = time_mask if mask.axis == 0 else freq_mask
                    target[row, mask.start:mask.start + mask.width] = True
        for (item, _, _), count in zip(good, counts, strict=True):
            item["num_frames"] = count
        return ClipBatch(items, None, torch.tensor(counts, dtype=torch.int64), lease,
                         waves=out, wave_lengths=torch.tensor(sizes, dtype=torch.int64),
                         time_mask=time_mask, freq_mask=freq_mask)
