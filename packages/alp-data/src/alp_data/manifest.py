"""JSONL manifests of audio-caption clips: one validated row per clip (the ALP schema).

A manifest is the contract between corpus recipes and the loader, so a malformed row fails
early with the file, 1-based line number, key and the accepted form, instead of deep inside
a worker process hours into a run. Manifests are read and written through fsspec, so any URL
works (``memory://``, ``s3://`` with its extra); a ``.gz`` name is gzip-compressed. The schema
is documented in ``packages/alp-data/README.md``; rows of the first format (no offset,
channels, corpus, domain or caption objects) are still read unchanged.

By default the first bad row stops the read. ``read_manifest(max_bad_rows=...)`` instead
skips up to that many bad rows (bad JSON, a failed check, a duplicate id, a line that is not
UTF-8), each recorded as a :class:`BadRow` and logged, and fails once there are more. A file
that is not UTF-8 text at all (UTF-16/32, binary, gzip without a ``.gz`` name) always fails.
Locations in messages pass through :func:`~alp_data.scrub.scrub_url`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fsspec

from alp_core.errors import ConfigError, DataError
from alp_data.scrub import safe_cause, scrub_url

__all__ = ["DOMAINS", "BadRow", "Caption", "ManifestEntry", "is_url", "read_manifest",
           "resolve_audio_path", "write_manifest"]

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class BadRow:
    """A manifest row skipped by :func:`read_manifest`: the manifest (credentials scrubbed),
    its 1-based ``line``, the ``key`` at fault (``<row>`` for the whole line), what is wrong
    with it and what is accepted (``problem``), and the row's ``id`` when it has one."""

    path: str
    line: int
    key: str
    problem: str
    id: str = ""

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: key {self.key!r}: {self.problem}"


class _RowError(DataError):
    """One row failed; carries the :class:`BadRow` (its message is today's error text)."""

    def __init__(self, row: BadRow) -> None:
        super().__init__(str(row))
        self.row = row


def _fail(path: str, line: int, key: str, problem: str, accepted: str) -> _RowError:
    return _RowError(BadRow(scrub_url(path), line, key, scrub_url(f"{problem}; accepted: "
                                                                  f"{accepted}")))


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (json reads 400 digits so)
        return False


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
        # json reads NaN, Infinity and 1e999 as floats: a finite number is asked for
        if not _number(value) or not _finite(value) or value < 0:
            raise _fail(path, line, key, f"got {value!r}", "a finite number of seconds >= 0")
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


_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
         (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"))


def _read_bytes(path: str) -> tuple[bytes, int]:
    """The (decompressed) manifest; a file that is not UTF-8 text at all fails here."""
    safe = scrub_url(path)
    try:
        with fsspec.open(path, "rb", compression="infer") as handle:
            raw = handle.read()
    except FileNotFoundError as err:
        raise DataError(f"manifest not found: {safe}") from safe_cause(err, path)
    except ImportError as err:
        message = f"manifest {path}: its fsspec backend is not installed ({err})"
        raise DataError(scrub_url(message)) from safe_cause(err, path)
    except ValueError as err:
        message = f"manifest {path}: cannot read it ({err})"
        if "protocol" in str(err).lower():
            message = f"manifest {path}: no fsspec backend for its protocol ({err})"
        raise DataError(scrub_url(message)) from safe_cause(err, path)
    except (OSError, EOFError) as err:
        message = f"manifest {path}: cannot read it ({err})"
        raise DataError(scrub_url(message)) from safe_cause(err, path)
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            raise DataError(f"manifest {safe} is {codec} text (it starts with a {codec} byte "
                            f"order mark); re-save it as UTF-8 (JSONL manifests are UTF-8)")
    if raw[:2] == b"\x1f\x8b":
        raise DataError(f"manifest {safe} is gzip-compressed but its name does not end in .gz; "
                        "rename it to end in .gz")
    if b"\x00" in raw[:65536]:
        raise DataError(f"manifest {safe} holds NUL bytes: UTF-16/32 text without a byte order "
                        "mark, or not text at all; re-save it as UTF-8 JSONL")
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM is harmless: read past it
        return raw[3:], 3
    return raw, 0


def _not_utf8(path: str, raw: bytes, err: UnicodeDecodeError, base: int) -> str:
    where = "decompressed " if path.endswith(".gz") else ""
    at = base + err.start
    return (f"not UTF-8 at {where}byte offset {at} ({raw[err.start:err.start + 1]!r}); "
            "manifests are UTF-8 JSONL")


def _read_lines(path: str, raw: bytes, tolerant: bool, start: int = 0
                ) -> list[tuple[int, str | BadRow]]:
    """``(line number, text)`` of the file; with ``tolerant`` a line that is not UTF-8 gives
    a :class:`BadRow` in place of its text, else the first one fails naming its offset
    (``start``: the bytes of the file before ``raw``, a byte order mark)."""
    try:
        return list(enumerate(raw.decode("utf-8").split("\n"), start=1))
    except UnicodeDecodeError as err:
        if not tolerant:
            line = raw.count(b"\n", 0, err.start) + 1
            problem = _not_utf8(path, raw, err, start)
            raise DataError(f"{scrub_url(path)}:{line}: {problem}") from safe_cause(err, path)
    lines: list[tuple[int, str | BadRow]] = []
    base = start
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append((number, chunk.decode("utf-8")))
        except UnicodeDecodeError as err:
            lines.append((number, BadRow(scrub_url(path), number, "<row>",
                                         _not_utf8(path, chunk, err, base))))
        base += len(chunk) + 1
    return lines


def _check_budget(max_bad_rows: int | float) -> None:
    if isinstance(max_bad_rows, bool) or not isinstance(max_bad_rows, (int, float)):
        raise ConfigError(f"max_bad_rows must be a count >= 0 or a fraction in (0, 1), got "
                          f"{max_bad_rows!r}")
    if isinstance(max_bad_rows, int):
        if max_bad_rows < 0:
            raise ConfigError(f"max_bad_rows must be a count >= 0 or a fraction in (0, 1), "
                              f"got {max_bad_rows}")
    elif not 0 < max_bad_rows < 1:
        raise ConfigError(f"max_bad_rows as a float is a fraction of the rows in (0, 1), got "
                          f"{max_bad_rows}; give a count as an int")


def _allowed_bad(max_bad_rows: int | float, rows: int) -> int:
    """The number of bad rows tolerated: a count, or a fraction of the non-blank rows."""
    if isinstance(max_bad_rows, int):
        return max_bad_rows
    return math.floor(max_bad_rows * rows)


def read_manifest(
    path: str | Path,
    *,
    max_bad_rows: int | float = 0,
    bad_rows: list[BadRow] | None = None,
) -> list[ManifestEntry]:
    """Read a JSONL manifest (local path or fsspec URL, ``.gz`` decompressed); blank lines are
    skipped. Keys beside the documented ones are ignored so recipes may carry extra metadata.

    ``max_bad_rows`` (0: the first bad row raises its :class:`DataError`) tolerates bad rows:
    an int is a count, a float in (0, 1) a fraction of the non-blank rows (rounded down).
    Each skipped row -- invalid JSON, a failed check, a duplicate id (the later row), a line
    that is not UTF-8 -- is logged and appended to ``bad_rows`` when a list is given; one row
    more than allowed raises a :class:`DataError` naming the count and the first rows.
    """
    _check_budget(max_bad_rows)
    path = str(path)
    manifest_dir = _manifest_dir(path)
    raw, start = _read_bytes(path)
    tolerant = max_bad_rows != 0
    lines = _read_lines(path, raw, tolerant, start)
    allowed = 0 if not tolerant else _allowed_bad(max_bad_rows, sum(
        1 for _, text in lines if not isinstance(text, str) or text.strip()))
    skipped: list[BadRow] = []
    entries: list[ManifestEntry] = []
    seen: dict[str, int] = {}
    for number, text in lines:
        if isinstance(text, BadRow):
            bad = text
        elif not text.strip():
            continue
        else:
            try:
                entry = _parse_row(text, path, number, manifest_dir, seen)
            except _RowError as err:
                if not tolerant:
                    raise
                bad = err.row
            else:
                seen[entry.id] = number
                entries.append(entry)
                continue
        skipped.append(bad)
        if bad_rows is not None:
            bad_rows.append(bad)
        log.warning("skipping manifest row %s", bad)
        if len(skipped) > allowed:
            raise _over_budget(path, skipped, allowed, max_bad_rows)
    return entries


def _parse_row(text: str, path: str, number: int, manifest_dir: str,
               seen: dict[str, int]) -> ManifestEntry:
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        raise _fail(path, number, "<row>", f"invalid JSON ({err.msg})",
                    "one JSON object per line") from err
    try:
        entry = _check_row(row, path, number, manifest_dir)
    except _RowError as err:
        ident = row.get("id") if isinstance(row, dict) else None
        if isinstance(ident, str) and ident:
            raise _RowError(replace(err.row, id=ident)) from err
        raise
    if entry.id in seen:
        dup = _fail(path, number, "id", f"duplicate id {entry.id!r} (first on line "
                    f"{seen[entry.id]})", "ids unique within a manifest")
        raise _RowError(replace(dup.row, id=entry.id))
    return entry


def _over_budget(path: str, skipped: list[BadRow], allowed: int,
                 max_bad_rows: int | float) -> DataError:
    shown = "; ".join(f"line {r.line}: key {r.key!r}: {r.problem}" for r in skipped[:5])
    more = f"; and {len(skipped) - 5} more" if len(skipped) > 5 else ""
    return DataError(f"manifest {scrub_url(path)}: {len(skipped)} bad rows, over the budget of "
                     f"{allowed} (max_bad_rows={max_bad_rows}; raise max_bad_rows -- a count "
                     f"or a fraction of the rows -- to skip more): {shown}{more}")


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
