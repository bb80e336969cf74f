"""JSONL manifests of audio-caption clips: one validated row per clip.

A manifest is the contract between corpus recipes and the loader, so a malformed row fails
early with the file, 1-based line number, key and the accepted form, instead of deep inside
a worker process hours into a run.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from alp_core.errors import DataError

__all__ = ["ManifestEntry", "is_url", "read_manifest", "resolve_audio_path", "write_manifest"]


@dataclass(frozen=True)
class ManifestEntry:
    """One clip: its audio location (absolute path or URL once read), length and captions."""

    id: str
    audio: str
    duration: float
    sample_rate: int
    captions: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    split: str = ""

    def to_row(self, audio: str | None = None) -> dict[str, Any]:
        """The JSON row of this entry (``audio`` overrides the stored location)."""
        row: dict[str, Any] = {
            "id": self.id,
            "audio": self.audio if audio is None else audio,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "captions": list(self.captions),
            "labels": dict(self.labels),
        }
        if self.split:
            row["split"] = self.split
        return row


def is_url(path: str) -> bool:
    """True for an fsspec URL such as ``s3://bucket/a.flac`` or ``file:///x.wav``."""
    return "://" in path


def resolve_audio_path(audio: str, manifest_dir: str) -> str:
    """Make ``audio`` absolute: URLs and absolute paths stay, others join the manifest folder."""
    if is_url(audio) or os.path.isabs(audio):
        return audio
    if is_url(manifest_dir):
        return posixpath.join(manifest_dir, audio)
    return os.path.normpath(os.path.join(manifest_dir, audio))


def _fail(path: str, line: int, key: str, problem: str, accepted: str) -> DataError:
    return DataError(f"{path}:{line}: key {key!r}: {problem}; accepted: {accepted}")


def _check_row(row: Any, path: str, line: int, manifest_dir: str) -> ManifestEntry:
    """Validate one decoded JSON row into a :class:`ManifestEntry`."""
    if not isinstance(row, dict):
        raise _fail(path, line, "<row>", f"got {type(row).__name__}", "a JSON object per line")
    for key in ("id", "audio", "duration", "sample_rate", "captions"):
        if key not in row:
            raise _fail(path, line, key, "required key is missing",
                        "rows with id, audio, duration, sample_rate, captions")
    ident, audio = row["id"], row["audio"]
    if not isinstance(ident, str) or not ident:
        raise _fail(path, line, "id", f"got {ident!r}", "a non-empty string")
    if not isinstance(audio, str) or not audio:
        raise _fail(path, line, "audio", f"got {audio!r}",
                    "a non-empty path (relative to the manifest folder or absolute) or URL")
    duration = row["duration"]
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
        raise _fail(path, line, "duration", f"got {duration!r}", "a number of seconds >= 0")
    rate = row["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise _fail(path, line, "sample_rate", f"got {rate!r}", "a positive integer (Hz)")
    caps = row["captions"]
    if not isinstance(caps, list) or not caps:
        raise _fail(path, line, "captions", f"got {caps!r}", "a non-empty list of strings")
    if not all(isinstance(c, str) and c.strip() for c in caps):
        raise _fail(path, line, "captions", f"got {caps!r}", "a list of non-empty strings")
    labels = row.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _fail(path, line, "labels", f"got {labels!r}", "an object mapping strings to strings")
    split = row.get("split", "")
    if not isinstance(split, str):
        raise _fail(path, line, "split", f"got {split!r}", "a string such as 'train' or 'test'")
    return ManifestEntry(
        id=ident,
        audio=resolve_audio_path(audio, manifest_dir),
        duration=float(duration),
        sample_rate=rate,
        captions=tuple(caps),
        labels=dict(labels),
        split=split,
    )


def _manifest_dir(path: str) -> str:
    if is_url(path):
        return posixpath.dirname(path)
    return os.path.dirname(os.path.abspath(path))


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read a JSONL manifest (local path or fsspec URL); blank lines are skipped.

    Keys beside the documented ones are ignored so recipes may carry extra metadata.
    """
    path = str(path)
    manifest_dir = _manifest_dir(path)
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            lines = list(handle)
    except FileNotFoundError as err:
        raise DataError(f"manifest not found: {path}") from err
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as err:
            raise _fail(path, number, "<row>", f"invalid JSON ({err.msg})",
                        "one JSON object per line") from err
        entry = _check_row(row, path, number, manifest_dir)
        if entry.id in seen:
            raise _fail(path, number, "id", f"duplicate id {entry.id!r} (first on line "
                        f"{seen[entry.id]})", "ids unique within a manifest")
        seen[entry.id] = number
        entries.append(entry)
    return entries


def _relative_audio(audio: str, manifest_dir: str) -> str:
    """``audio`` relative to the manifest folder when it lies inside it, else unchanged."""
    if is_url(audio) or is_url(manifest_dir) or not os.path.isabs(audio):
        return audio
    rel = os.path.relpath(audio, manifest_dir)
    return audio if rel.startswith("..") else rel


def write_manifest(
    path: str | Path, entries: Iterable[ManifestEntry], *, relative: bool = True
) -> None:
    """Write ``entries`` as JSONL; with ``relative`` local audio under the folder is relative.

    Relative paths keep a corpus folder movable; :func:`read_manifest` resolves them back.
    """
    path = str(path)
    manifest_dir = _manifest_dir(path)
    if not is_url(path):
        os.makedirs(manifest_dir, exist_ok=True)
    with fsspec.open(path, "wt", encoding="utf-8") as handle:
        for entry in entries:
            audio = _relative_audio(entry.audio, manifest_dir) if relative else entry.audio
            handle.write(json.dumps(entry.to_row(audio), ensure_ascii=False) + "\n")
