"""Sound event detection: DESED (DCASE task 4), strong labels with onsets and offsets.

Each clip carries its events as :class:`~alp_eval.datasets.base.Event` s and, as clip-level
labels, the classes that occur in it; :func:`event_roll` turns the events into frame-level
targets.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alp_core.errors import ConfigError, DataError
from alp_eval.datasets.base import (
    DEFAULT_MAX_MISSING,
    Benchmark,
    BenchmarkClip,
    Event,
    Listed,
    read_table,
    require_dir,
    require_file,
    resolve_clips,
    split_protocol,
    unknown_label,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DESED_CLASSES", "DESED_SPLITS", "event_roll", "load_desed"]

DESED_CLASSES = ("Alarm_bell_ringing", "Blender", "Cat", "Dishes", "Dog",
                 "Electric_shaver_toothbrush", "Frying", "Running_water", "Speech",
                 "Vacuum_cleaner")
# split -> (events TSV, audio folder, durations TSV or ""), as in the DESED_task recipes
DESED_SPLITS: dict[str, tuple[str, str, str]] = {
    "train": ("metadata/train/synthetic21_train/soundscapes.tsv",
              "audio/train/synthetic21_train/soundscapes", ""),
    "val": ("metadata/validation/synthetic21_validation/soundscapes.tsv",
            "audio/validation/synthetic21_validation/soundscapes",
            "metadata/validation/synthetic21_validation/durations.tsv"),
    "test": ("metadata/validation/validation.tsv", "audio/validation/validation",
             "metadata/validation/validation_durations.tsv"),
}


def _seconds(name: str, path: Path, line: int, column: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise DataError(f"{name}: {path}:{line}: column {column!r} is {value!r}; accepted: "
                        "seconds >= 0")
    return seconds


def _events(name: str, path: Path, rel: str) -> dict[str, tuple[str, list[Event]]]:
    """filename -> (``rel:first line``, events) of a strong-label TSV; a row with empty onset,
    offset and label is a clip without events."""
    out: dict[str, tuple[str, list[Event]]] = {}
    for line, r in read_table(name, path, ("filename", "onset", "offset", "event_label"),
                              delimiter="\t"):
        _, events = out.setdefault(r["filename"], (f"{rel}:{line}", []))
        cells = (r["onset"], r["offset"], r["event_label"])
        if not any(cells):
            continue
        if not all(cells):
            raise DataError(f"{name}: {path}:{line}: onset, offset and event_label must be "
                            f"all given or all empty (no events); got {list(cells)}")
        if r["event_label"] not in DESED_CLASSES:
            raise unknown_label(name, path, line, r["event_label"], DESED_CLASSES)
        onset = _seconds(name, path, line, "onset", r["onset"])
        offset = _seconds(name, path, line, "offset", r["offset"])
        if offset < onset:
            raise DataError(f"{name}: {path}:{line}: offset {offset} before onset {onset}")
        events.append(Event(onset, offset, r["event_label"]))
    return out


def _audio_folder(name: str, root: Path, rel: str) -> Path:
    """``rel`` or its resampled twin ``rel_16k`` (what the DESED_task recipes write)."""
    for candidate in (rel, rel + "_16k"):
        if (root / candidate).is_dir():
            return root / candidate
    return require_dir(name, root, rel)


def load_desed(root: str | os.PathLike, *,
               splits: Mapping[str, Sequence[str]] | None = None,
               max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """DESED strong-label SED (10 classes), the folder the DESED download scripts build.

    Per split an events TSV (columns filename, onset, offset, event_label; tab-separated),
    its audio folder (``<folder>`` or ``<folder>_16k``) and optionally a durations TSV
    (filename, duration: adds the files without events and the clip lengths). Default
    (``DESED_SPLITS``): train = synthetic21_train soundscapes, val = synthetic21_validation
    soundscapes, test = the real public validation set (1,168 clips, ``validation.tsv``).
    ``splits`` replaces it, e.g. ``{"test": ("metadata/eval/public.tsv", "audio/eval/public",
    "")}`` with train and val. Weak and unlabeled subsets are not read.
    """
    name, root = "DESED", Path(root).absolute()
    spec = {k: tuple(v) + ("",) * (3 - len(v)) for k, v in (splits or DESED_SPLITS).items()}
    if set(spec) - {"train", "val", "test"} or not {"train", "test"} <= set(spec) or any(
            len(v) != 3 for v in spec.values()):
        raise ConfigError(f"{name}: splits={dict(splits or {})!r}; accepted: train, test and "
                          "optionally val, each (events TSV, audio folder[, durations TSV])")
    listed = []
    for split, (tsv, folder, durations_tsv) in spec.items():
        events_path = require_file(name, root, tsv)
        audio = _audio_folder(name, root, folder)
        by_file = _events(name, events_path, tsv)
        lengths: dict[str, float] = {}
        if durations_tsv and (root / durations_tsv).is_file():
            for line, r in read_table(name, root / durations_tsv, ("filename", "duration"),
                                      delimiter="\t"):
                lengths[r["filename"]] = _seconds(name, root / durations_tsv, line,
                                                  "duration", r["duration"])
                by_file.setdefault(r["filename"], (f"{durations_tsv}:{line}", []))
        for filename, (source, events) in by_file.items():
            present = {ev.label for ev in events}
            listed.append(Listed(BenchmarkClip(
                id=f"{split}/{os.path.splitext(filename)[0]}", path=str(audio / filename),
                labels=tuple(c for c in DESED_CLASSES if c in present), fold_or_split=split,
                duration=lengths.get(filename),
                events=tuple(sorted(events))), source))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="desed", domain="sound", task="sed", classes=DESED_CLASSES,
                     clips=clips, protocol=split_protocol(val="val" if "val" in spec else None),
                     protocol_name="train/val/test: " + ", ".join(
                         f"{k} {v[0]}" for k, v in spec.items()),
                     root=str(root), skipped=skipped, listed=len(listed))


def event_roll(clip: BenchmarkClip, classes: Sequence[str], hop: float,
               duration: float | None = None) -> np.ndarray:
    """Frame-level targets of a SED clip: a bool array (frames, classes), frame ``i`` covering
    ``[i * hop, (i + 1) * hop)`` and active for ``floor(onset / hop) <= i < ceil(offset / hop)``
    (the segment rule of :mod:`alp_eval.sed`). ``duration`` (else the clip's, else its last
    offset) sets the number of frames, ``ceil(duration / hop)``."""
    import numpy as np

    if hop <= 0:
        raise ConfigError(f"event_roll: hop={hop!r}; accepted: seconds > 0")
    length = duration if duration is not None else clip.duration
    if length is None:
        length = max((ev.offset for ev in clip.events), default=0.0)
    frames = math.ceil(round(length / hop, 9))
    index = {c: i for i, c in enumerate(classes)}
    roll = np.zeros((frames, len(classes)), dtype=bool)
    for ev in clip.events:
        if ev.label not in index:
            raise DataError(f"event_roll: clip {clip.id!r} has event label {ev.label!r} outside "
                            f"the {len(classes)} classes")
        first = math.floor(round(ev.onset / hop, 9))
        last = math.ceil(round(ev.offset / hop, 9))
        roll[first:last, index[ev.label]] = True
    return roll
