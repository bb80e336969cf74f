"""DataLoader construction and the bad-clip budget enforced in the main process.

Workers never raise on a bad clip (see :class:`~alp_data.transform.BadClip`); the training
loop passes each batch's ``skipped`` list to a :class:`BadClipBudget`, which warns per clip,
keeps every one with its reason, and stops the run once too many clips fail, since a mass
failure means a broken corpus. The run folder's :data:`SKIPPED_CLIPS_FILE` lists them all.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import fsspec
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from alp_core.errors import ConfigError, DataError
from alp_data.collate import Collator
from alp_data.manifest import BadRow, is_url
from alp_data.sampler import (
    DurationBucketSampler,
    EpochSampler,
    EvenBatchSampler,
    ResumableBatchSampler,
)
from alp_data.scrub import scrub_url
from alp_data.transform import BadClip

__all__ = ["SKIPPED_CLIPS_FILE", "BadClipBudget", "BadClipBudgetExceeded", "build_loader",
           "set_loader_epoch", "write_skipped_jsonl"]

log = logging.getLogger(__name__)

#: The run-folder file listing every skipped clip (and skipped manifest row), one JSON
#: object per line: ``index, id, path, error, reason``.
SKIPPED_CLIPS_FILE = "skipped_clips.jsonl"

_SHOWN = 5  # paths named in the over-budget error (the file has them all)


def _scrubbed(clip: BadClip) -> BadClip:
    return replace(clip, path=scrub_url(clip.path), error=scrub_url(clip.error))


def _row_record(row: BadRow) -> dict[str, Any]:
    return {"index": -1, "id": row.id, "path": f"{row.path}:{row.line}", "error": str(row),
            "reason": "row"}


def write_skipped_jsonl(path: str | Path, clips: Iterable[BadClip | Mapping[str, Any]],
                        bad_rows: Iterable[BadRow] = ()) -> None:
    """Write every skipped clip (``BadClip`` or its ``asdict`` form, e.g. gathered from all
    ranks) and then every skipped manifest row (reason ``row``, path ``manifest:line``) to
    ``path`` (a local path or URL), one JSON object per line; locations are scrubbed."""
    path = str(path)
    if not is_url(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with fsspec.open(path, "wt", encoding="utf-8") as handle:
        for clip in clips:
            record = asdict(clip) if isinstance(clip, BadClip) else dict(clip)
            record.setdefault("reason", "")
            record["path"] = scrub_url(str(record.get("path", "")))
            record["error"] = scrub_url(str(record.get("error", "")))
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        for row in bad_rows:
            handle.write(json.dumps(_row_record(row), ensure_ascii=False) + "\n")


class BadClipBudgetExceeded(DataError):
    """More clips failed than ``data.max_bad_clips`` allows (in a distributed run raised by
    every rank at the same step)."""


class BadClipBudget:
    """Keeps distinct skipped clips; raises :class:`DataError` once more than ``max_bad`` failed.

    A clip is counted once however often it is met (every epoch, every evaluation pass).
    Every clip is kept with its reason (:attr:`skipped`, :meth:`summary`,
    :meth:`write_jsonl`); paths and errors are stored with URL credentials scrubbed.
    """

    def __init__(self, max_bad: int) -> None:
        if max_bad < 0:
            raise ConfigError(f"max_bad must be >= 0 (number of clips), got {max_bad}")
        self.max_bad = max_bad
        self._seen: dict[tuple[str, str], BadClip] = {}

    @property
    def skipped(self) -> list[BadClip]:
        return list(self._seen.values())

    @property
    def count(self) -> int:
        return len(self._seen)

    def summary(self) -> dict[str, int]:
        """Skipped clips per reason, most frequent first (``unknown`` for clips without one)."""
        counts = Counter(c.reason or "unknown" for c in self._seen.values())
        return dict(counts.most_common())

    def update(self, skipped: Iterable[BadClip], check: bool = True) -> None:
        """Record one batch's skipped clips (a warning for each new one); raise when over,
        unless ``check`` is False (a distributed run then stops every rank together)."""
        for clip in skipped:
            clip = _scrubbed(clip)
            key = (clip.id, clip.path)
            if key not in self._seen:
                log.warning("skipping clip %s (%s) [%s]: %s", clip.id, clip.path,
                            clip.reason or "unknown", clip.error)
                self._seen[key] = clip
        if check and self.over:
            raise BadClipBudgetExceeded(self.over_budget_message())

    @property
    def over(self) -> bool:
        """Whether more than ``max_bad`` distinct clips failed."""
        return self.count > self.max_bad

    def over_budget_message(self) -> str:
        """The error once over: counts by reason, the first paths, where the list is."""
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.summary().items())
        shown = [c.path for c in self.skipped[:_SHOWN]]
        more = f" and {self.count - len(shown)} more" if self.count > len(shown) else ""
        return (f"{self.count} clips failed to load, over the budget of {self.max_bad} "
                f"(raise data.max_bad_clips to allow more); by reason: {reasons}; first: "
                f"{', '.join(shown)}{more}; every skipped clip with its error is listed in "
                f"{SKIPPED_CLIPS_FILE} in the run folder")

    def write_jsonl(self, path: str | Path, bad_rows: Iterable[BadRow] = ()) -> None:
        """Write every skipped clip (then ``bad_rows``) to ``path``, one JSON object per line
        (``index, id, path, error, reason``); see :func:`write_skipped_jsonl`."""
        write_skipped_jsonl(path, self.skipped, bad_rows)


def build_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    collator: Collator,
    seed: int = 0,
    drop_last: bool = False,
    max_batch_seconds: float | None = None,
    num_buckets: int = 10,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    prefetch_factor: int | None = None,
) -> DataLoader:
    """A DataLoader over ``dataset`` with per-epoch deterministic order.

    Without ``max_batch_seconds`` batches hold ``batch_size`` clips; with it a
    :class:`DurationBucketSampler` packs clips by duration (``dataset.durations()``) under
    that many padded seconds, ``batch_size`` capping the clip count. Workers are persistent.
    Call :func:`set_loader_epoch` before iterating each epoch. The batches come from a
    :class:`ResumableBatchSampler` (``loader.batch_sampler.skip(k)`` resumes mid-epoch), and
    the loader draws its worker seeds from a generator of its own, so iterating never moves
    the global torch random stream (which dropout reads).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    kwargs: dict[str, Any] = {
        "num_workers": num_workers,
        "collate_fn": collator,
        "pin_memory": pin_memory,
        "persistent_workers": num_workers > 0,
        "generator": torch.Generator().manual_seed(seed),
    }
    if num_workers > 0 and prefetch_factor is not None:
        kwargs["prefetch_factor"] = prefetch_factor
    if max_batch_seconds is not None:
        durations = getattr(dataset, "durations", None)
        if durations is None:
            raise ConfigError("max_batch_seconds needs a dataset with a durations() method "
                              f"(e.g. AudioCaptionDataset), got {type(dataset).__name__}")
        batches: Any = DurationBucketSampler(
            durations(), max_batch_seconds=max_batch_seconds, max_batch_size=batch_size,
            num_buckets=num_buckets, shuffle=shuffle, seed=seed, drop_last=drop_last,
            rank=rank, world_size=world_size,
        )
    elif world_size > 1 and not drop_last:  # evaluation over ranks: keep every clip
        batches = EvenBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed,
                                   rank=rank, world_size=world_size)
    else:
        sampler = EpochSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank,
                               world_size=world_size)
        batches = BatchSampler(sampler, batch_size, drop_last)
    return DataLoader(dataset, batch_sampler=ResumableBatchSampler(batches), **kwargs)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Set ``epoch`` on the loader's sampler and dataset (before ``iter(loader)``); a loader
    with its own ``set_epoch`` (the shard stream's) is told itself."""
    own = getattr(loader, "set_epoch", None)
    if callable(own):
        own(epoch)
        return
    for obj in (loader.batch_sampler, loader.dataset):
        setter = getattr(obj, "set_epoch", None)
        if setter is not None:
            setter(epoch)
