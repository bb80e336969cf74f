"""JSONL manifests of audio-caption clips: one validated row per clip (the ALP schema).

A manifest is the contract between corpus recipes and the loader, so a malformed row fails
early with the file, 1-based line number, key and the accepted form, instead of deep inside
a worker process hours into a run. Manifests are read and written through fsspec, so any URL
works (``memory://``, ``s3://`` with its extra); a ``.gz`` name is gzip-compressed. The schema
is documented in ``packages/alp-data/README.md``; rows of the first format (no offset,
channels, corpus, domain or caption objects) are still read unchanged.
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

__all__ = ["DOMAINS", "Caption", "ManifestEntry", "is_url", "read_manifest",
           "resolve_audio_path", "write_manifest"]

DOMAINS = ("speech", "music", "sound")
_REQUIRED = ("id", "audio", "duration", "sample_rate", "captions")


@dataclass(frozen=True)
class Caption:
    """One caption with where it came from: ``style`` (e.g. tags, short, detailed) and
    ``source`` (human, an LLM, a corpus name); empty when unknown."""

    text: str
    style: str = ""
    source: str = ""

    def to_row(self) -> str | dict[str, str]:
        """A plain string when nothing but the text is known, else an object."""
        if not self.style and not self.source:
            return self.text
        row = {"text": self.text}
        row.update({k: v for k, v in (("style", self.style), ("source", self.source)) if v})
        return row


@dataclass(frozen=True)
class ManifestEntry:
    """One clip: its audio location (absolute path or URL once read), segment and captions.

    ``captions`` stays a tuple of strings for the loader; ``caption_info`` holds one
    :class:`Caption` per caption when any style/source is known (else it is empty).
    ``offset``/``duration`` select the clip inside the file (seconds); ``channels`` 0 and an
    empty ``corpus``/``domain`` mean unknown.
    """

    id: str
    audio: str
    duration: float
    sample_rate: int
    captions: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    split: str = ""
    offset: float = 0.0
    channels: int = 0
    corpus: str = ""
    domain: str = ""
    caption_info: tuple[Caption, ...] = ()

    def caption_records(self) -> tuple[Caption, ...]:
        """One :class:`Caption` per caption (style and source empty where unknown)."""
        return self.caption_info or tuple(Caption(c) for c in self.captions)

    def to_row(self, audio: str | None = None) -> dict[str, Any]:
        """The JSON row of this entry (``audio`` overrides the stored location).

        Optional keys at their defaults are left out, so first-format rows round-trip as is.
        """
        row: dict[str, Any] = {
            "id": self.id,
            "audio": self.audio if audio is None else audio,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "captions": [c.to_row() for c in self.caption_records()],
            "labels": dict(self.labels),
        }
        extra = {"offset": self.offset, "channels": self.channels, "corpus": self.corpus,
                 "domain": self.domain, "split": self.split}
        row.update({k: v for k, v in extra.items() if v})
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


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _check_captions(caps: Any, path: str, line: int) -> tuple[tuple[str, ...], tuple]:
    """Captions as strings or ``{"text", "style"?, "source"?}`` objects -> (texts, info)."""
    if not isinstance(caps, list) or not caps:
        raise _fail(path, line, "captions", f"got {caps!r}", "a non-empty list of strings")
    records = []
    for cap in caps:
        if isinstance(cap, dict):
            text = cap.get("text")
            meta = {k: cap.get(k, "") for k in ("style", "source")}
            if (set(cap) - {"text", "style", "source"} or not isinstance(text, str)
                    or not all(isinstance(v, str) for v in meta.values())):
                raise _fail(path, line, "captions", f"got {cap!r}",
                            'strings or objects {"text": str, "style"?: str, "source"?: str}')
            records.append(Caption(text, **meta))
        else:
            records.append(Caption(cap if isinstance(cap, str) else ""))
    if not all(isinstance(c.text, str) and c.text.strip() for c in records):
        raise _fail(path, line, "captions", f"got {caps!r}", "a list of non-empty strings")
    info = tuple(records) if any(c.style or c.source for c in records) else ()
    return tuple(c.text for c in records), info


def _check_row(row: Any, path: str, line: int, manifest_dir: str) -> ManifestEntry:
    """Validate one decoded JSON row into a :class:`ManifestEntry`."""
    if not isinstance(row, dict):
        raise _fail(path, line, "<row>", f"got {type(row).__name__}", "a JSON object per line")
    for key in _REQUIRED:
        if key not in row:
            raise _fail(path, line, key, "required key is missing",
                        "rows with id, audio, duration, sample_rate, captions")
    ident, audio = row["id"], row["audio"]
    if not isinstance(ident, str) or not ident:
        raise _fail(path, line, "id", f"got {ident!r}", "a non-empty string")
    if not isinstance(audio, str) or not audio:
        raise _fail(path, line, "audio", f"got {audio!r}",
                    "a non-empty path (relative to the manifest folder or absolute) or URL")
    for key in ("duration", "offset"):
        value = row.get(key, 0.0)
        if not _number(value) or value < 0:
            raise _fail(path, line, key, f"got {value!r}", "a number of seconds >= 0")
    for key, low in (("sample_rate", 1), ("channels", 0)):
        value = row.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise _fail(path, line, key, f"got {value!r}",
                        "a positive integer (Hz)" if low else "a channel count >= 1 (0: unknown)")
    captions, info = _check_captions(row["captions"], path, line)
    labels = row.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise _fail(path, line, "labels", f"got {labels!r}", "an object mapping strings to strings")
    for key in ("split", "corpus", "domain"):
        if not isinstance(row.get(key, ""), str):
            raise _fail(path, line, key, f"got {row[key]!r}", "a string")
    if row.get("domain", "") not in ("", *DOMAINS):
        raise _fail(path, line, "domain", f"got {row['domain']!r}", ", ".join(DOMAINS))
    return ManifestEntry(
        id=ident, audio=resolve_audio_path(audio, manifest_dir),
        duration=float(row["duration"]), sample_rate=row["sample_rate"], captions=captions,
        labels=dict(labels), split=row.get("split", ""), offset=float(row.get("offset", 0.0)),
        channels=row.get("channels", 0), corpus=row.get("corpus", ""),
        domain=row.get("domain", ""), caption_info=info,
    )


def _manifest_dir(path: str) -> str:
    if is_url(path):
        return posixpath.dirname(path)
    return os.path.dirname(os.path.abspath(path))


def _read_lines(path: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of the (decompressed) file; non-UTF-8 bytes name their offset."""
    try:
        with fsspec.open(path, "rb", compression="infer") as handle:
            raw = handle.read()
    except FileNotFoundError as err:
        raise DataError(f"manifest not found: {path}") from err
    except ImportError as err:
        raise DataError(f"manifest {path}: its fsspec backend is not installed ({err})") from err
    except (OSError, EOFError) as err:
        raise DataError(f"manifest {path}: cannot read it ({err})") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        where = "decompressed " if path.endswith(".gz") else ""
        raise DataError(f"{path}:{line}: not UTF-8 at {where}byte offset {err.start} "
                        f"({raw[err.start:err.start + 1]!r}); manifests are UTF-8 JSONL") from err
    return list(enumerate(text.split("\n"), start=1))


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Read a JSONL manifest (local path or fsspec URL, ``.gz`` decompressed); blank lines are
    skipped. Keys beside the documented ones are ignored so recipes may carry extra metadata.
    """
    path = str(path)
    manifest_dir = _manifest_dir(path)
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    for number, text in _read_lines(path):
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
    """Write ``entries`` as JSONL to a path or fsspec URL (gzip when it ends in ``.gz``); with
    ``relative`` local audio under the manifest folder is written relative to it.

    Relative paths keep a corpus folder movable; :func:`read_manifest` resolves them back.
    """
    path = str(path)
    manifest_dir = _manifest_dir(path)
    if not is_url(path):
        os.makedirs(manifest_dir, exist_ok=True)
    with fsspec.open(path, "wt", encoding="utf-8", compression="infer") as handle:
        for entry in entries:
            audio = _relative_audio(entry.audio, manifest_dir) if relative else entry.audio
            handle.write(json.dumps(entry.to_row(audio), ensure_ascii=False) + "\n")
