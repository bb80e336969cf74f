"""CaptionStew-style mixing: several corpora's manifests -> one deduplicated training corpus.

The study mixed six captioned corpora in proportion to their hours of audio, after removing
clips that overlap evaluation sets. :func:`mix` does that in five steps, always in the order
the sources are given, so the first source wins every tie:

1. **Exclusion** (``exclude``): a clip whose key (below) is listed in an exclusion file is
   removed. Text files hold one id per line (blank lines and lines starting with ``#`` are
   ignored); ``.csv`` files (``.csv.gz`` too) need a header and the first of the columns
   ``youtube_id`` (AudioCaps), ``ytid`` (MusicCaps), ``id``, ``clip_id`` that is present;
   with an ``is_audioset_eval`` column (MusicCaps' ``musiccaps-public.csv``, which lists the
   whole corpus) only the rows flagged ``True`` there, its evaluation set.
2. **Id dedup**: a clip whose id is a YouTube form is dropped when an earlier *source* holds a
   clip of the same video. Key of an id (:func:`clip_key`): surrounding spaces and one audio
   suffix (``.wav .flac .mp3 .ogg .opus .m4a``) are removed; if the rest is an optional ``Y``,
   exactly 11 characters of ``[A-Za-z0-9_-]`` (the video id) and up to two ``_<number>``
   segment times (``abc_30``, ``Yabc.wav``, ``Yabc_30.000_40.000``, ``abc_000030``), the key is
   ``yt:<video id>`` -- the times are dropped because AudioSet, AudioCaps, MusicCaps and
   VGGSound hold one 10 s segment per video. (The two parses, with and without ``Y``, never
   both match.) Other ids keep their own text as key; they are matched against exclusion
   lists but never dedup across sources, because corpora number clips independently
   (FreeSound ``1000`` and SoundBible ``1000`` are different sounds): content hashing finds
   those copies. Clips of one source are never dropped against each other.
3. **Content dedup** (unless ``content_hash=False``): sha1 of ``b"<rate>:<channels>:"``
   followed by the int16 little-endian interleaved PCM of the segment
   ``[offset, offset + duration]`` as soundfile decodes it (so a FLAC and a WAV of the same
   samples collide). A clip whose hash equals that of an earlier source's clip is dropped.
   Hashes are computed in chunks through :func:`alp_data.parallel.map_tasks`. A clip whose
   audio cannot be read is kept, counted and listed as ``unreadable``.
4. **Weighting**: with ``hours`` (default), a source of ``H`` hours (after steps 1-3) and
   weight ``w`` (default 1) contributes ``w * H`` hours: ``floor(w)`` copies of every clip
   plus one more copy of the clips of lowest seeded priority whose hours first reach
   ``(w - floor(w)) * H`` (so within one clip's duration above it). Each source's share of the
   mix is ``w_s H_s / sum_t w_t H_t``; all weights 1 keeps the natural proportion to hours.
   Copy ``k >= 1`` of a clip gets the id ``<id>#r<k>``. ``clips`` is the same measured in
   clips (``w * N`` clips). ``none`` keeps every clip once and takes no weights.
5. **Nested subsets** (``subsets``): each entry of the mix gets a seeded priority from its
   output id; subset ``f`` keeps, per source, the entries of lowest priority whose hours (clip
   count with ``weighting="clips"``) first reach ``f`` times that source's amount in the mix.
   One priority order for all fractions makes every smaller subset part of every larger one,
   and per-source selection keeps the mix's proportions.

Priorities are ``blake2b(f"{seed}\\x1f{purpose}\\x1f{id}")``, so a clip's draw does not depend
on the other clips or on the worker count; the outputs are byte-identical for the same inputs
and seed. Output ids that collide across sources (with different audio) become
``<source>/<id>`` and are listed as renamed. Captions are counted in words: the
lower-cased ``\\w+('\\w+)*`` tokens (``dog's`` is one word); the vocabulary is the set of them.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import posixpath
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import soundfile as sf

from alp_core.errors import ConfigError, DataError
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest
from alp_data.parallel import map_tasks
from alp_data.scrub import safe_cause, scrub_url

__all__ = ["EVAL_FLAG", "EXCLUDE_COLUMNS", "WEIGHTINGS", "MixConfig", "MixResult", "MixSource",
           "caption_words", "clip_key", "content_hash", "group_stats", "mix", "parse_fractions",
           "parse_source", "read_id_list", "youtube_id"]

WEIGHTINGS = ("hours", "clips", "none")
EXCLUDE_COLUMNS = ("youtube_id", "ytid", "id", "clip_id")
#: A CSV column that marks the evaluation rows (MusicCaps' ``musiccaps-public.csv`` lists its
#: whole corpus): when present, only rows with ``True`` there are excluded.
EVAL_FLAG = "is_audioset_eval"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
REPORT_JSON, REPORT_MD, REPORT_PNG = "mix_report.json", "mix_report.md", "mix_report.png"
HASH_CHUNK = 64
SOURCE_FORM = "NAME=MANIFEST[:WEIGHT], e.g. audiocaps=runs/ac/train.jsonl or clotho=cl.jsonl:2"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_YOUTUBE = re.compile(r"Y?([A-Za-z0-9_-]{11})(?:_\d+(?:\.\d+)?){0,2}")
_WORD = re.compile(r"\w+(?:'\w+)*")


@dataclass(frozen=True)
class MixSource:
    """One corpus: its ``name`` (the output ``corpus`` when a clip has none), the manifest
    path or URL, and its ``weight`` (None: not given, i.e. 1)."""

    name: str
    manifest: str
    weight: float | None = None


@dataclass(frozen=True)
class MixConfig:
    """What :func:`mix` does; validated on construction (errors name the argument)."""

    sources: tuple[MixSource, ...]
    out: str
    weighting: str = "hours"
    exclude: tuple[str, ...] = ()
    subsets: tuple[float, ...] = ()
    seed: int = 0
    hash_workers: int = 1
    content_hash: bool = True
    compress: bool = False
    backend: str = "local"
    address: str | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError(f"give at least one source as {SOURCE_FORM}")
        names = [s.name for s in self.sources]
        for source in self.sources:
            if not _NAME.fullmatch(source.name):
                raise ConfigError(f"source name {source.name!r}: accepted are letters, digits "
                                  "and _ . - (starting with a letter or digit)")
            if names.count(source.name) > 1:
                raise ConfigError(f"source name {source.name!r} is given twice; each source "
                                  "needs its own name")
            if source.weight is not None and not (math.isfinite(source.weight)
                                                  and source.weight > 0):
                raise ConfigError(f"source {source.name!r}: weight {source.weight!r}; accepted: "
                                  "a finite number > 0 (leave a source out to drop it)")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"--weighting {self.weighting!r} is not known; accepted: "
                              f"{', '.join(WEIGHTINGS)}")
        weighted = [s.name for s in self.sources if s.weight is not None]
        if self.weighting == "none" and weighted:
            raise ConfigError(f"--weighting none keeps every clip once, but weights are given "
                              f"for {', '.join(weighted)}; use --weighting hours or clips")
        for fraction in self.subsets:
            if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
                raise ConfigError(f"--subsets: fraction {fraction!r} is outside (0, 1]")
        if len(set(self.subsets)) != len(self.subsets):
            raise ConfigError(f"--subsets: a fraction is listed twice in {list(self.subsets)}")
        if self.hash_workers < 1:
            raise ConfigError(f"--hash-workers must be >= 1, got {self.hash_workers}")


@dataclass
class MixResult:
    """What :func:`mix` wrote: the report (as in ``mix_report.json``) and the file paths."""

    report: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)


def parse_source(spec: str) -> MixSource:
    """``NAME=MANIFEST[:WEIGHT]`` -> :class:`MixSource`. A ``:`` tail without ``/`` is the
    weight, so URLs such as ``s3://b/x.jsonl`` keep their colon."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ConfigError(f"source {spec!r}: expected {SOURCE_FORM}")
    weight = None
    head, colon, tail = rest.rpartition(":")
    if colon and "/" not in tail and "\\" not in tail:
        try:
            weight = float(tail)
        except ValueError:
            raise ConfigError(f"source {spec!r}: weight {tail!r} is not a number; expected "
                              f"{SOURCE_FORM}") from None
        rest = head
        if not rest:
            raise ConfigError(f"source {spec!r}: no manifest path; expected {SOURCE_FORM}")
    return MixSource(name, rest, weight)


def parse_fractions(text: str) -> tuple[float, ...]:
    """``"0.1,0.25,0.5"`` -> ``(0.1, 0.25, 0.5)``; each must lie in (0, 1]."""
    fractions = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--subsets: {part!r} is not a number; expected fractions in "
                              "(0, 1] separated by commas, e.g. 0.1,0.25,0.5") from None
        if not 0 < value <= 1:
            raise ConfigError(f"--subsets: fraction {part} is outside (0, 1]")
        fractions.append(value)
    return tuple(fractions)


def strip_audio_suffix(ident: str) -> str:
    """``ident`` without one trailing audio suffix (``Yabc.wav`` -> ``Yabc``)."""
    stem, ext = os.path.splitext(ident)
    return stem if ext.lower() in AUDIO_SUFFIXES else ident


def youtube_id(ident: str) -> str | None:
    """The 11-character video id of a YouTube/AudioSet clip id form, else None."""
    match = _YOUTUBE.fullmatch(strip_audio_suffix(ident.strip()))
    return match.group(1) if match else None


def clip_key(ident: str) -> str:
    """``yt:<video id>`` for YouTube forms, else the id without spaces and audio suffix."""
    video = youtube_id(ident)
    return f"yt:{video}" if video else strip_audio_suffix(ident.strip())


def read_id_list(path: str) -> list[str]:
    """The clip ids listed by an exclusion file (text: one per line; CSV: see the module)."""
    shown = scrub_url(path)
    try:
        with fsspec.open(path, "rt", encoding="utf-8-sig", compression="infer") as handle:
            text = handle.read()
    except FileNotFoundError as err:
        raise DataError(f"--exclude file not found: {shown}") from safe_cause(err, path)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(scrub_url(f"--exclude {shown}: cannot read it as UTF-8 text ({err})")
                        ) from safe_cause(err, path)
    name = path[:-3] if path.endswith(".gz") else path
    if name.lower().endswith(".csv"):
        reader = csv.reader(io.StringIO(text))
        first = next(reader, [])
        header = [h.strip().lower() for h in first]
        column = next((c for c in EXCLUDE_COLUMNS if c in header), None)
        if column is None and posixpath.basename(name).lower() == "vggsound.csv":
            # VGGSound's list as published: no header, rows "ytid,start,label,split"; its
            # test split is what an evaluation excludes
            rows = [first, *reader]
            return [row[0].strip() for row in rows
                    if len(row) >= 4 and row[3].strip().lower() == "test" and row[0].strip()]
        if column is None:
            raise DataError(f"--exclude {shown}:1: header {header} has no id column; accepted "
                            f"columns: {', '.join(EXCLUDE_COLUMNS)} (the first present is used)"
                            "; a list without a header (e.g. VGGSound's vggsound.csv) needs "
                            "one added, or give a .txt file with one id per line")
        at = header.index(column)
        rows = [row for row in reader if len(row) > at and row[at].strip()]
        if EVAL_FLAG in header:  # MusicCaps lists every clip; its eval set is flagged
            flag = header.index(EVAL_FLAG)
            rows = [row for row in rows
                    if len(row) > flag and row[flag].strip().lower() == "true"]
        return [row[at].strip() for row in rows]
    ids = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if any(c.isspace() or c == "," for c in line):
            raise DataError(f"--exclude {shown}:{number}: expected one id per line, got "
                            f"{line!r}; a table must be a .csv file with a header")
        ids.append(line)
    return ids


def content_hash(audio: str, offset: float = 0.0, duration: float = 0.0) -> str:
    """sha1 hex of ``"<rate>:<channels>:"`` + int16 PCM of ``[offset, offset+duration]``
    (``duration`` 0: to the end). Raises :class:`DataError` naming the file on failure."""
    try:
        with fsspec.open(audio, "rb") as handle, sf.SoundFile(handle) as snd:
            rate = int(snd.samplerate)
            start = int(round(offset * rate))
            if start:
                snd.seek(min(start, snd.frames))
            frames = int(round(duration * rate)) if duration > 0 else -1
            data = snd.read(frames=frames, dtype="int16", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError, EOFError, ImportError) as err:
        # ImportError: the URL's fsspec backend is not installed
        raise DataError(scrub_url(f"cannot decode audio file {audio}: {err}")
                        ) from safe_cause(err, audio)
    if data.shape[0] == 0:
        raise DataError(f"audio file {scrub_url(audio)} holds no samples at offset {offset} s")
    digest = hashlib.sha1(f"{rate}:{data.shape[1]}:".encode())
    digest.update(np.ascontiguousarray(data, dtype="<i2").tobytes())
    return digest.hexdigest()


def _hash_chunk(task: tuple[tuple[str, float, float], ...]) -> list[tuple[bool, str]]:
    """``(True, sha1)`` or ``(False, error)`` per clip; module level so it pickles."""
    results = []
    for audio, offset, duration in task:
        try:
            results.append((True, content_hash(audio, offset, duration)))
        except DataError as err:
            results.append((False, str(err)))
    return results


def priority(seed: int, purpose: str, ident: str) -> int:
    """A seeded pseudo-random 64-bit draw for ``ident`` (independent of any other clip)."""
    data = f"{seed}\x1f{purpose}\x1f{ident}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def take_lowest(sizes: Sequence[float], priorities: Sequence[int], fraction: float) -> list[bool]:
    """Mask of the items of lowest priority whose sizes first reach ``fraction`` of the total.

    The shortest such prefix of the priority order, so a larger fraction keeps a superset.
    """
    if fraction >= 1:
        return [True] * len(sizes)
    total = math.fsum(sizes)
    target = fraction * total - 1e-9 * max(total, 1.0)  # 0.1 * 30 clips is 3, not 3.0000...4
    keep = [False] * len(sizes)
    reached = 0.0
    for index in sorted(range(len(sizes)), key=lambda i: (priorities[i], i)):
        if reached >= target:
            break
        keep[index] = True
        reached += sizes[index]
    return keep


def _size(entry: ManifestEntry, unit: str) -> float:
    return 1.0 if unit == "clips" else entry.duration


def weight_source(entries: Sequence[ManifestEntry], weight: float, unit: str, seed: int,
                  name: str) -> list[ManifestEntry]:
    """The source's share of the mix: ``floor(weight)`` copies of each clip plus one more of
    a seeded subset reaching the fractional part (in ``unit``: hours or clips)."""
    whole = math.floor(weight + 1e-9)
    extra = [False] * len(entries)
    if weight - whole > 1e-9:
        extra = take_lowest([_size(e, unit) for e in entries],
                            [priority(seed, f"weight/{name}", e.id) for e in entries],
                            weight - whole)
    out: list[ManifestEntry] = []
    for entry, more in zip(entries, extra):
        out.extend(entry if k == 0 else replace(entry, id=f"{entry.id}#r{k}")
                   for k in range(whole + int(more)))
    return out


def caption_words(text: str) -> list[str]:
    """Lower-cased word tokens of a caption (``\\w+('\\w+)*``)."""
    return _WORD.findall(text.lower())


def group_stats(entries: Sequence[ManifestEntry]) -> dict[str, Any]:
    """Clips, captions, hours, caption length in words (mean, median, p95) and vocabulary."""
    lengths: list[int] = []
    vocabulary: set[str] = set()
    for entry in entries:
        for caption in entry.captions:
            tokens = caption_words(caption)
            lengths.append(len(tokens))
            vocabulary.update(tokens)
    array = np.asarray(lengths, dtype=np.float64)
    words = {"mean": 0.0, "median": 0.0, "p95": 0.0}
    if lengths:
        words = {"mean": round(float(array.mean()), 4), "median": float(np.median(array)),
                 "p95": round(float(np.percentile(array, 95)), 4)}
    return {"clips": len(entries), "captions": len(lengths),
            "hours": round(math.fsum(e.duration for e in entries) / 3600, 6),
            "caption_words": words, "vocabulary": len(vocabulary)}


def _load(config: MixConfig) -> dict[str, list[ManifestEntry]]:
    loaded = {}
    for source in config.sources:
        entries = read_manifest(source.manifest)
        loaded[source.name] = [e if e.corpus else replace(e, corpus=source.name)
                               for e in entries]
    return loaded


def _exclude(config: MixConfig, loaded: dict[str, list[ManifestEntry]], report: dict) -> None:
    listed: dict[str, str] = {}
    files = report["exclude_files"]
    for path in config.exclude:
        ids = read_id_list(path)
        files[path] = {"listed": len(ids), "removed": 0, "removed_per_source": {}}
        for ident in ids:
            listed.setdefault(clip_key(ident), path)
    for name, entries in loaded.items():
        kept: list[ManifestEntry] = []
        for entry in entries:
            key = clip_key(entry.id)
            hit = listed.get(key)
            if hit is None:
                kept.append(entry)
                continue
            files[hit]["removed"] += 1
            per_source = files[hit]["removed_per_source"]
            per_source[name] = per_source.get(name, 0) + 1
            report["sources"][name]["excluded"] += 1
            report["removed"]["excluded"].append(
                {"source": name, "id": entry.id, "key": key, "file": hit})
        loaded[name] = kept


def _drop_duplicates(loaded: dict[str, list[ManifestEntry]], keys: dict[str, list[str | None]],
                     reason: str, report: dict) -> None:
    """Drop clips whose key (None: no key) an earlier source's kept clip holds."""
    first: dict[str, tuple[str, str]] = {}
    for name, entries in loaded.items():
        kept = []
        for entry, key in zip(entries, keys[name]):
            owner = first.get(key) if key is not None else None
            if owner is not None and owner[0] != name:
                report["sources"][name][f"duplicate_{reason}"] += 1
                report["removed"]["duplicates"].append(
                    {"source": name, "id": entry.id, "reason": reason, "key": key,
                     "kept_source": owner[0], "kept_id": owner[1]})
                continue
            if key is not None:
                first.setdefault(key, (name, entry.id))
            kept.append(entry)
        loaded[name] = kept


def _content_keys(config: MixConfig, loaded: dict[str, list[ManifestEntry]],
                  report: dict) -> dict[str, list[str | None]]:
    flat = [(name, e) for name, entries in loaded.items() for e in entries]
    tasks = [tuple((e.audio, e.offset, e.duration) for _, e in flat[i:i + HASH_CHUNK])
             for i in range(0, len(flat), HASH_CHUNK)]
    results = [r for chunk in map_tasks(_hash_chunk, tasks, workers=config.hash_workers,
                                                 backend=config.backend,
                                                 address=config.address)
               for r in chunk]
    keys: dict[str, list[str | None]] = {name: [] for name in loaded}
    for (name, entry), (ok, value) in zip(flat, results):
        keys[name].append(value if ok else None)
        if not ok:
            report["sources"][name]["unreadable"] += 1
            report["unreadable"].append({"source": name, "id": entry.id,
                                         "audio": scrub_url(entry.audio),
                                         "error": scrub_url(value)})
    return keys


def _unique_ids(mixed: list[tuple[str, ManifestEntry]], report: dict) -> None:
    taken: set[str] = set()
    for index, (name, entry) in enumerate(mixed):
        ident = entry.id
        if ident in taken:
            ident, n = f"{name}/{entry.id}", 1
            while ident in taken:
                n += 1
                ident = f"{name}/{entry.id}~{n}"
            report["renamed"].append({"source": name, "id": entry.id, "new_id": ident})
            mixed[index] = (name, replace(entry, id=ident))
        taken.add(ident)


def _write_jsonl(path: Path, entries: Sequence[ManifestEntry]) -> None:
    """Write a manifest; ``.gz`` without a timestamp in the header, so it is reproducible."""
    if path.suffix != ".gz":
        write_manifest(path, entries)
        return
    plain = path.with_name(path.name[:-3] + ".tmp")
    write_manifest(plain, entries)
    with open(plain, "rb") as src, open(path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as dst:
        shutil.copyfileobj(src, dst)
    plain.unlink()


def _new_report(config: MixConfig) -> dict[str, Any]:
    return {
        "config": {"sources": [{"name": s.name, "manifest": s.manifest, "weight": s.weight}
                               for s in config.sources],
                   "weighting": config.weighting, "exclude": list(config.exclude),
                   "subsets": list(config.subsets), "seed": config.seed,
                   "content_hash": config.content_hash, "compress": config.compress},
        "sources": {s.name: {"manifest": s.manifest, "weight": s.weight, "input": {},
                             "excluded": 0, "duplicate_id": 0, "duplicate_content": 0,
                             "unreadable": 0, "kept": {}, "output": {}, "domain_hours": {}}
                    for s in config.sources},
        "domains": {}, "total": {}, "exclude_files": {}, "subsets": {}, "files": {},
        "notes": [], "removed": {"excluded": [], "duplicates": []}, "unreadable": [],
        "renamed": [],
    }


def mix(config: MixConfig) -> MixResult:
    """Run the five steps of the module docstring and write the manifests and reports."""
    report = _new_report(config)
    loaded = _load(config)
    for name, entries in loaded.items():
        report["sources"][name]["input"] = group_stats(entries)
    _exclude(config, loaded, report)
    _drop_duplicates(loaded, {n: [k if k.startswith("yt:") else None
                                  for k in (clip_key(e.id) for e in es)]
                              for n, es in loaded.items()}, "id", report)
    if config.content_hash:
        _drop_duplicates(loaded, _content_keys(config, loaded, report), "content", report)
    unit = "clips" if config.weighting == "clips" else "hours"
    mixed: list[tuple[str, ManifestEntry]] = []
    for source in config.sources:
        entries = loaded[source.name]
        report["sources"][source.name]["kept"] = {
            "clips": len(entries), "hours": round(math.fsum(e.duration for e in entries) / 3600,
                                                  6)}
        weight = 1.0 if config.weighting == "none" else (source.weight or 1.0)
        mixed.extend((source.name, e) for e in weight_source(entries, weight, unit,
                                                              config.seed, source.name))
    _unique_ids(mixed, report)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".jsonl.gz" if config.compress else ".jsonl"
    files = {"train": f"train{suffix}"}
    _write_jsonl(out / files["train"], [e for _, e in mixed])
    for name, record in report["sources"].items():
        own = [e for n, e in mixed if n == name]
        record["output"] = group_stats(own)
        record["domain_hours"] = {
            d: round(math.fsum(e.duration for e in own if (e.domain or "unknown") == d) / 3600, 6)
            for d in sorted({e.domain or "unknown" for e in own})}
    domains = sorted({e.domain or "unknown" for _, e in mixed})
    report["domains"] = {d: group_stats([e for _, e in mixed if (e.domain or "unknown") == d])
                         for d in domains}
    report["total"] = group_stats([e for _, e in mixed])
    _write_subsets(config, mixed, unit, out, suffix, report, files)
    png = plot_hours(report, out / REPORT_PNG)
    if png is None:
        report["notes"].append("mix_report.png not written: matplotlib is not installed "
                               "(pip install 'alp-data[report]')")
    else:
        files["chart"] = REPORT_PNG
    files.update(report=REPORT_JSON, summary=REPORT_MD)
    report["files"] = dict(files)
    # manifests and exclusion lists may be credentialed URLs: the report never shows them
    report = json.loads(scrub_url(json.dumps(report, ensure_ascii=False)))
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
    (out / REPORT_MD).write_text(report_markdown(report), encoding="utf-8")
    return MixResult(report, {k: str(out / v) for k, v in files.items()})


def _write_subsets(config: MixConfig, mixed: list[tuple[str, ManifestEntry]], unit: str,
                   out: Path, suffix: str, report: dict, files: dict[str, str]) -> None:
    by_source: dict[str, list[int]] = {}
    for index, (name, _) in enumerate(mixed):
        by_source.setdefault(name, []).append(index)
    ranks = {name: [priority(config.seed, f"subset/{name}", mixed[i][1].id) for i in idx]
             for name, idx in by_source.items()}
    for fraction in sorted(config.subsets):
        keep: set[int] = set()
        for name, idx in by_source.items():
            mask = take_lowest([_size(mixed[i][1], unit) for i in idx], ranks[name], fraction)
            keep.update(i for i, m in zip(idx, mask) if m)
        chosen = [e for i, (_, e) in enumerate(mixed) if i in keep]
        label = f"subset_{fraction:g}"
        files[label] = f"train_{label}{suffix}"
        _write_jsonl(out / files[label], chosen)
        report["subsets"][f"{fraction:g}"] = {"file": files[label], **group_stats(chosen)}


def plot_hours(report: dict[str, Any], path: Path) -> Path | None:
    """A bar chart of hours per source (stacked by domain) and per domain, as PNG; None
    when matplotlib (the ``alp-data[report]`` extra) is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    domains = list(report["domains"])
    sources = list(report["sources"])
    fig = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    bottom = np.zeros(len(sources))
    for domain in domains:
        values = np.array([report["sources"][s]["domain_hours"].get(domain, 0.0)
                           for s in sources])
        left.bar(sources, values, bottom=bottom, label=domain)
        bottom += values
    left.set_ylabel("hours")
    left.set_title("hours per source")
    if domains:
        left.legend(fontsize="small")
    left.tick_params(axis="x", labelrotation=30)
    right.bar(domains, [report["domains"][d]["hours"] for d in domains], color="tab:gray")
    right.set_title("hours per domain")
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def report_markdown(report: dict[str, Any]) -> str:
    """The human-readable summary written as ``mix_report.md``."""
    def row(cells: Sequence[Any]) -> str:
        return "| " + " | ".join(str(c) for c in cells) + " |"

    def stats_row(label: str, s: dict[str, Any]) -> str:
        w = s["caption_words"]
        return row([label, s["clips"], s["captions"], f"{s['hours']:.3f}", w["mean"],
                    w["median"], w["p95"], s["vocabulary"]])

    head = ["clips", "captions", "hours", "words mean", "words median", "words p95", "vocab"]
    lines = ["# Mix report", "", f"Weighting: {report['config']['weighting']}, seed "
             f"{report['config']['seed']}.", "", "## Removed per source", "",
             row(["source", "input clips", "excluded", "duplicate id", "duplicate content",
                  "unreadable (kept)", "kept clips", "weight", "output clips"]),
             row(["---"] * 9)]
    for name, s in report["sources"].items():
        lines.append(row([name, s["input"]["clips"], s["excluded"], s["duplicate_id"],
                          s["duplicate_content"], s["unreadable"], s["kept"]["clips"],
                          1.0 if s["weight"] is None else s["weight"], s["output"]["clips"]]))
    for title, groups in (("Output per source", report["sources"]),
                          ("Output per domain", report["domains"])):
        lines += ["", f"## {title}", "", row(["", *head]), row(["---"] * 8)]
        lines += [stats_row(k, g.get("output", g)) for k, g in groups.items()]
    lines.append(stats_row("**total**", report["total"]))
    if report["exclude_files"]:
        lines += ["", "## Exclusion files", "", row(["file", "ids listed", "clips removed"]),
                  row(["---"] * 3)]
        lines += [row([p, f["listed"], f["removed"]]) for p, f in report["exclude_files"].items()]
    if report["subsets"]:
        lines += ["", "## Nested subsets", "", row(["fraction", "file", "clips", "hours"]),
                  row(["---"] * 4)]
        lines += [row([f, s["file"], s["clips"], f"{s['hours']:.3f}"])
                  for f, s in report["subsets"].items()]
    lines += ["", f"Renamed ids: {len(report['renamed'])}. The full lists of removed, "
              "unreadable and renamed clips are in mix_report.json."]
    lines += [f"Note: {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
