"""The uniform description of an evaluation benchmark, and the checks every loader shares.

A loader reads one benchmark's on-disk layout into a :class:`Benchmark`: its label vocabulary,
one :class:`BenchmarkClip` per audio file with its labels and fold or split, the official
protocol as data, and the clips its label files name whose audio is missing. Wrong layouts,
missing columns and unknown labels are :class:`~alp_core.errors.DataError` s that name the file
(and line) at fault; missing audio is counted against a ``max_missing`` budget, as the corpus
recipes of alp-data do. Only the standard library is imported here, so loading stays cheap.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from alp_core.errors import ConfigError, DataError

__all__ = [
    "AUDIO_EXTENSIONS", "DEFAULT_MAX_MISSING", "DOMAINS", "SPLIT_ROLES", "TASK_TYPES",
    "Benchmark", "BenchmarkClip", "Event", "Listed", "ProtocolRound", "SkippedClip",
    "audio_problem", "fold_protocol", "read_lines", "read_table", "require_dir",
    "require_file", "resolve_clips", "split_protocol", "unknown_label",
]

DOMAINS = ("speech", "music", "sound")
TASK_TYPES = ("multiclass", "multilabel", "sed")
SPLIT_ROLES = ("train", "val", "test")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".au")
DEFAULT_MAX_MISSING = 0.02
_WAV_HEADER_BYTES = 44  # a canonical WAV header; a file no longer than it holds no samples


class Event(NamedTuple):
    """One sound event of a sound-event-detection clip, in seconds from the clip start."""

    onset: float
    offset: float
    label: str


class ProtocolRound(NamedTuple):
    """One round of the evaluation protocol: the folds/splits to train, validate and test on."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


class SkippedClip(NamedTuple):
    """A clip the label files name but whose audio is unusable; ``source`` is file:line."""

    id: str
    path: str
    reason: str
    source: str


@dataclass(frozen=True)
class BenchmarkClip:
    """One evaluation clip: its audio file, labels (one for multiclass), fold or split name,
    the segment inside the file (``duration`` None: to its end) and, for SED, its events."""

    id: str
    path: str
    labels: tuple[str, ...]
    fold_or_split: str
    offset: float = 0.0
    duration: float | None = None
    events: tuple[Event, ...] = ()


class Listed(NamedTuple):
    """A clip as the label files name it, before its audio is checked; ``source`` says where."""

    clip: BenchmarkClip
    source: str


@dataclass(frozen=True)
class Benchmark:
    """One benchmark in the uniform form every ALP evaluation consumes.

    ``protocol`` is the official evaluation protocol as data, one :class:`ProtocolRound` per
    round (5 for 5-fold cross-validation, 1 for train/val/test); ``protocol_name`` says it in
    words. ``skipped`` lists the named clips whose audio is missing or empty; ``listed`` counts
    every clip the label files name (kept + skipped). ``notes`` records the loader's choices
    (e.g. notes left out of a pitch range) so a report can print them.
    """

    name: str
    domain: str
    task: str
    classes: tuple[str, ...]
    clips: tuple[BenchmarkClip, ...]
    protocol: tuple[ProtocolRound, ...]
    protocol_name: str
    root: str
    skipped: tuple[SkippedClip, ...] = ()
    listed: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _check_benchmark(self)

    @property
    def splits(self) -> tuple[str, ...]:
        """Every fold or split name the protocol uses, in order of first use."""
        seen: dict[str, None] = {}
        for rnd in self.protocol:
            for name in (*rnd.train, *rnd.val, *rnd.test):
                seen.setdefault(name, None)
        return tuple(seen)

    def counts(self) -> dict[str, int]:
        """Number of clips per fold or split."""
        out = {name: 0 for name in self.splits}
        for clip in self.clips:
            out[clip.fold_or_split] += 1
        return out

    def round_clips(self, index: int = 0) -> dict[str, list[BenchmarkClip]]:
        """The clips of protocol round ``index`` by role: ``{"train", "val", "test"}``."""
        if not 0 <= index < len(self.protocol):
            raise ConfigError(f"{self.name}: protocol round {index} does not exist; valid: "
                              f"0..{len(self.protocol) - 1} ({self.protocol_name})")
        rnd = self.protocol[index]
        roles = {"train": set(rnd.train), "val": set(rnd.val), "test": set(rnd.test)}
        return {role: [c for c in self.clips if c.fold_or_split in names]
                for role, names in roles.items()}


def _check_benchmark(bench: Benchmark) -> None:
    """Internal consistency: known domain/task, labels inside the vocabulary, unique ids."""
    where = f"benchmark {bench.name!r}"
    if bench.domain not in DOMAINS:
        raise DataError(f"{where}: domain {bench.domain!r}; accepted: {', '.join(DOMAINS)}")
    if bench.task not in TASK_TYPES:
        raise DataError(f"{where}: task {bench.task!r}; accepted: {', '.join(TASK_TYPES)}")
    if not bench.classes or len(set(bench.classes)) != len(bench.classes):
        raise DataError(f"{where}: classes must be a non-empty list of distinct names")
    if not bench.protocol:
        raise DataError(f"{where}: the protocol has no rounds")
    vocab, splits, ids = set(bench.classes), set(bench.splits), set()
    for clip in bench.clips:
        if clip.id in ids:
            raise DataError(f"{where}: clip id {clip.id!r} occurs twice (ids must be unique)")
        ids.add(clip.id)
        unknown = [lab for lab in clip.labels if lab not in vocab]
        unknown += [ev.label for ev in clip.events if ev.label not in vocab]
        if unknown:
            raise DataError(f"{where}: clip {clip.id!r} has labels {unknown} outside the "
                            f"{len(vocab)} classes")
        if bench.task == "multiclass" and len(clip.labels) != 1:
            raise DataError(f"{where}: clip {clip.id!r} has labels {list(clip.labels)}; a "
                            "multiclass clip has exactly one")
        if clip.fold_or_split not in splits:
            raise DataError(f"{where}: clip {clip.id!r} is in {clip.fold_or_split!r}, which no "
                            f"protocol round uses ({', '.join(bench.splits)})")
    empty = [name for name, n in bench.counts().items() if n == 0]
    if empty:
        raise DataError(f"{where}: no clips in {', '.join(empty)} (under {bench.root}); the "
                        "protocol needs every fold/split")


def fold_protocol(folds: Sequence[str]) -> tuple[ProtocolRound, ...]:
    """Leave-one-fold-out cross-validation: round k tests on fold k and trains on the rest."""
    return tuple(ProtocolRound(tuple(f for f in folds if f != k), (), (k,)) for k in folds)


def split_protocol(train: str = "train", val: str | None = "val",
                   test: str = "test") -> tuple[ProtocolRound, ...]:
    """The single round of a fixed train/val/test (or train/test, ``val=None``) split."""
    return (ProtocolRound((train,), (val,) if val else (), (test,)),)


def check_max_missing(value: float) -> float:
    """``value`` if it is a fraction in [0, 1], else a :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"max_missing={value!r}: accepted: a fraction between 0 and 1")
    return float(value)


def _listing(folder: Path, limit: int = 12) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "nothing readable"
    if not names:
        return "an empty folder"
    more = f", ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _layout_error(bench: str, root: Path, rel: str, kind: str) -> DataError:
    """Name the expected file, what the nearest existing folder holds, and a likelier root."""
    if not root.is_dir():
        return DataError(f"{bench}: root folder {root} does not exist (expected {rel} "
                         "under it)")
    parent = root
    for part in Path(rel).parts[:-1]:
        if not (parent / part).is_dir():
            break
        parent = parent / part
    inside = "" if parent == root else f" in {parent.relative_to(root)}/"
    hint = ""
    try:
        subdirs = sorted(p for p in root.iterdir() if p.is_dir())[:64]
    except OSError:
        subdirs = []
    nested = [d for d in subdirs if (d / rel).exists()]
    if nested:
        hint = f"; did you mean root={nested[0]}?"
    return DataError(f"{bench}: expected {kind} {rel} under {root} (found{inside}: "
                     f"{_listing(parent)}){hint}")


def require_file(bench: str, root: Path, rel: str) -> Path:
    """``root/rel`` if it is a file, else a :class:`DataError` naming what was expected where."""
    path = root / rel
    if not path.is_file():
        raise _layout_error(bench, root, rel, "file")
    return path


def require_dir(bench: str, root: Path, rel: str) -> Path:
    """``root/rel`` if it is a folder, else a :class:`DataError` naming what was expected."""
    path = root / rel if rel else root
    if not path.is_dir():
        raise _layout_error(bench, root, rel.rstrip("/") + "/", "folder")
    return path


def _text(bench: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as err:
        raise DataError(f"{bench}: file not found: {path}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{bench}: {path}: not UTF-8 at byte offset {err.start}") from err


def read_lines(bench: str, path: Path) -> list[tuple[int, str]]:
    """``(line number, stripped text)`` of the non-blank lines of a UTF-8 text file."""
    lines = _text(bench, path).splitlines()
    return [(n, t.strip()) for n, t in enumerate(lines, start=1) if t.strip()]


def read_table(bench: str, path: Path, columns: Iterable[str], *, delimiter: str = ",",
               fieldnames: Sequence[str] | None = None) -> list[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV/TSV; its header (or ``fieldnames`` for a headerless
    file) must hold ``columns``. A missing column names the file, the column and the columns
    present; a row of the wrong width names its line."""
    reader = csv.reader(io.StringIO(_text(bench, path), newline=""), delimiter=delimiter)
    header = list(fieldnames) if fieldnames is not None else [
        h.strip() for h in next(reader, [])]
    lacking = [c for c in columns if c not in header]
    if lacking:
        raise DataError(f"{bench}: {path}: column(s) {', '.join(lacking)} missing; columns "
                        f"present: {', '.join(header) or '(none: empty file)'}")
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        if len(values) != len(header):
            raise DataError(f"{bench}: {path}:{reader.line_num}: {len(values)} fields, "
                            f"expected {len(header)} ({', '.join(header)})")
        rows.append((reader.line_num, dict(zip(header, (v.strip() for v in values)))))
    return rows


def unknown_label(bench: str, path: Path | str, line: int | str, label: str,
                  classes: Sequence[str]) -> DataError:
    """The error for a label outside the vocabulary, naming file and line."""
    shown = ", ".join(list(classes)[:8]) + (", ..." if len(classes) > 8 else "")
    return DataError(f"{bench}: {path}:{line}: label {label!r} is not one of the "
                     f"{len(classes)} classes ({shown})")


def audio_problem(path: str) -> str | None:
    """Why the audio file cannot be used (missing, empty, header only), or None when usable.

    Only the file's size is looked at: decoding every file would make loading slow, and the
    manifest conversion reads each header anyway.
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    if size == 0:
        return "empty file (0 bytes)"
    if path.lower().endswith(".wav") and size <= _WAV_HEADER_BYTES:
        return f"no audio samples ({size} bytes, a WAV header at most)"
    return None


def resolve_clips(bench: str, listed: Sequence[Listed], max_missing: float
                  ) -> tuple[tuple[BenchmarkClip, ...], tuple[SkippedClip, ...]]:
    """Keep the listed clips whose audio is usable; skip the others within the budget.

    Past ``floor(max_missing * len(listed))`` skipped clips it is a :class:`DataError` naming
    the first ones: then the root, the audio folder or the file naming is probably wrong.
    """
    max_missing = check_max_missing(max_missing)
    kept: list[BenchmarkClip] = []
    skipped: list[SkippedClip] = []
    for clip, source in listed:
        reason = audio_problem(clip.path)
        if reason is None:
            kept.append(clip)
        else:
            skipped.append(SkippedClip(clip.id, clip.path, reason, source))
    budget = math.floor(max_missing * len(listed))
    if len(skipped) > budget:
        first = "; ".join(f"{s.path} ({s.reason}, named in {s.source})" for s in skipped[:5])
        raise DataError(f"{bench}: {len(skipped)} of {len(listed)} listed clips have no usable "
                        f"audio, over the budget of {budget} (max_missing={max_missing}); "
                        f"first: {first}")
    return tuple(kept), tuple(skipped)
