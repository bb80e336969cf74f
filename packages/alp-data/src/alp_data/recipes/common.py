"""What every corpus recipe shares: reading its CSVs, probing audio, the missing-file budget.

A recipe lists :class:`Candidate` clips from the corpus metadata; :func:`build_manifests`
opens each audio header (duration, rate, channels), skips clips whose audio is missing or
unreadable, and metadata rows that cannot make a clip (a row short of a column, no caption,
an id listed twice), within the ``max_missing`` budget, and writes ``train``/``test``
manifests and a ``prepare_report.json`` that lists every skipped clip or row with its reason
(locations with URL credentials scrubbed). Downloads of YouTube
corpora always miss some clips, so a few are expected; past the budget it is an error that
names the first missing files, because then the root or the file naming is probably wrong.

Header probing runs in parallel (:func:`probe_headers`): with ``backend="local"`` on
``workers`` threads of this process (a header read is a few system calls, mostly waiting on
the file system, and threads start at once where processes take a second to spawn), with
``backend="dask"`` in chunks of clips through :func:`alp_data.parallel.map_tasks` on a Dask
cluster (the scheduler at ``address``, or a ``LocalCluster`` of ``workers`` processes), for
corpora on a shared or object store too large for one machine's file handles. Results come
back in clip order, so the manifests and the report are byte-identical for any backend and
any number of workers; the run options (``workers``, ``backend``, ``address``) are neither
written to the report nor part of the cache key.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import fsspec
import soundfile as sf
from pydantic import Field, model_validator

from alp_core import ComponentConfig
from alp_core.errors import DataError
from alp_data.manifest import Caption, ManifestEntry, is_url, write_manifest
from alp_data.scrub import safe_cause, scrub_url

REPORT = "prepare_report.json"

#: Options that say how a prepare runs, not what it writes: left out of the report's config
#: (an ``address`` may hold credentials) and of the cache key.
RUN_OPTIONS = ("workers", "backend", "address")

#: At most this many clips per header-probing task on a Dask cluster.
PROBE_CHUNK = 256

#: ``(location, problem, (sample_rate, frames, channels) or None)`` of one clip's audio.
Probe = tuple[str, str, tuple[int, int, int] | None]


class RecipeConfig(ComponentConfig):
    """Options every corpus recipe takes."""

    root: str = Field(description="the corpus folder (local path or fsspec URL)")
    max_missing: float = Field(0.1, ge=0, le=1, description="largest fraction of listed "
                               "clips (and metadata rows) skipped: audio missing or "
                               "unreadable, a row short of a column, no caption, a repeated id")
    val_to: Literal["train", "test", "drop"] = Field(
        "train", description="where the corpus's validation split goes")
    compress: bool = Field(False, description="write train.jsonl.gz/test.jsonl.gz")
    workers: int = Field(8, ge=1, description="audio headers probed in parallel: threads "
                         "(backend local) or the processes of a local Dask cluster (backend "
                         "dask without an address); the output is the same for any number")
    backend: Literal["local", "dask"] = Field(
        "local", description="where headers are probed: local (threads in this process) or "
        "dask (chunks of clips on a Dask cluster; needs alp-data[dask])")
    address: str | None = Field(
        None, description="Dask scheduler address, e.g. tcp://host:8786 (backend dask); "
        "none: a LocalCluster of `workers` processes started for the prepare")

    @model_validator(mode="after")
    def _address_needs_dask(self) -> RecipeConfig:
        if self.address is not None and self.backend != "dask":
            raise ValueError("address names a Dask scheduler; it needs backend=dask")
        return self

    def recorded(self) -> dict:
        """The options that decide the output (the report's ``config``, the cache key)."""
        recorded = self.model_dump(mode="json", exclude=set(RUN_OPTIONS))
        return {k: scrub_url(v) if isinstance(v, str) else v for k, v in recorded.items()}


@dataclass(frozen=True)
class Candidate:
    """A clip named by the corpus metadata; ``audio`` lists locations to try in order."""

    id: str
    audio: tuple[str, ...]
    captions: tuple[Caption, ...]
    split: str
    labels: dict[str, str] = field(default_factory=dict)
    offset: float = 0.0
    duration: float | None = None  # the segment's length; None: to the end of the file


def join(root: str, *parts: str) -> str:
    """``root/part/...`` for a local folder (made absolute: a manifest resolves relative audio
    paths against its own folder, not the working directory) or an fsspec URL."""
    if is_url(root):
        return posixpath.join(root, *parts)
    return os.path.join(os.path.abspath(root), *parts)


def bad_row(where: str, reason: str) -> dict[str, str]:
    """A metadata row that makes no clip, as the report lists it (``where``: file:line)."""
    return {"id": "", "path": scrub_url(where), "reason": reason}


def exists(path: str) -> bool:
    """Whether a local path or fsspec URL names an existing file."""
    fs, inner = fsspec.core.url_to_fs(path)
    return bool(fs.isfile(inner))


def route(split: str, config: RecipeConfig) -> str | None:
    """The ALP split of a corpus split name (``val`` follows ``val_to``; None: dropped)."""
    if split in ("train", "test"):
        return split
    return None if config.val_to == "drop" else config.val_to


def read_csv(path: str, columns: tuple[str, ...], bad: list[dict] | None = None
             ) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV; a missing file or column is a :class:`DataError` naming it. A row
    short of one of ``columns`` goes to ``bad`` (:func:`bad_row`), or is an error naming the
    file and line when ``bad`` is None."""
    return [row for _, row in read_csv_lines(path, columns, bad)]


def read_csv_lines(path: str, columns: tuple[str, ...], bad: list[dict] | None = None
                   ) -> list[tuple[int, dict[str, str]]]:
    """:func:`read_csv` with each row's line number in the file (its last line)."""
    shown = scrub_url(path)
    try:
        with fsspec.open(path, "rb") as handle:
            text = handle.read().decode("utf-8-sig")
    except FileNotFoundError as err:
        raise DataError(f"corpus metadata file not found: {shown}") from safe_cause(err, path)
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: not UTF-8 at byte offset {err.start}") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    lacking = [c for c in columns if c not in (reader.fieldnames or [])]
    if lacking:
        raise DataError(f"{shown}: column(s) {', '.join(lacking)} missing; found "
                        f"{', '.join(reader.fieldnames or [])}")
    rows = []
    for row in reader:
        short = [c for c in columns if row.get(c) is None]  # DictReader's fill for a short row
        if short:
            where = f"{shown}:{reader.line_num}"
            reason = f"row lacks column(s) {', '.join(short)}"
            if bad is None:
                raise DataError(f"{where}: {reason}; every row needs {', '.join(columns)}")
            bad.append(bad_row(where, reason))
            continue
        rows.append((reader.line_num, row))
    return rows


def _header(location: str) -> tuple[int, int, int]:
    """``(sample_rate, frames, channels)`` from the header of a local file or fsspec URL;
    :class:`FileNotFoundError` when there is none."""
    if is_url(location):
        with fsspec.open(location, "rb") as handle:
            info = sf.info(handle)
        return int(info.samplerate), int(info.frames), int(info.channels)
    if not os.path.exists(location):  # libsndfile would call it a "System error"
        raise FileNotFoundError(location)
    with sf.SoundFile(location) as snd:  # libsndfile opens the path itself
        return int(snd.samplerate), int(snd.frames), int(snd.channels)


def probe_audio(locations: tuple[str, ...]) -> Probe:
    """The header of the first of ``locations`` that exists: ``(location, "", header)``;
    ``(location, "unreadable: ...", None)`` when that file cannot be read, and
    ``(locations[0], "missing", None)`` when none exists."""
    for location in locations:
        try:
            header = _header(location)
        except FileNotFoundError:
            continue
        except (RuntimeError, OSError, ValueError, TypeError) as err:
            # libsndfile's text without its prefix, which names a handle by memory address
            detail = err.error_string if isinstance(err, sf.LibsndfileError) else str(err)
            return location, f"unreadable: {detail}", None
        return location, "", header
    return locations[0], "missing", None


def _probe_chunk(chunk: tuple[tuple[str, ...], ...]) -> list[Probe]:
    """:func:`probe_audio` of each clip of a chunk (a module-level task, so it pickles)."""
    return [probe_audio(locations) for locations in chunk]


def probe_headers(candidates: list[Candidate], config: RecipeConfig) -> list[Probe]:
    """:func:`probe_audio` of every candidate, in order, on the configured backend."""
    clips = [c.audio for c in candidates]
    if config.backend == "local":
        if config.workers == 1 or len(clips) <= 1:
            return [probe_audio(c) for c in clips]
        with ThreadPoolExecutor(min(config.workers, len(clips))) as pool:
            return list(pool.map(probe_audio, clips))
    from alp_data.parallel import map_tasks  # imports dask only when called with dask

    # a few chunks per worker (balance), at most PROBE_CHUNK clips each (bounded tasks)
    size = max(1, min(PROBE_CHUNK, math.ceil(len(clips) / (4 * config.workers))))
    chunks = [tuple(clips[i:i + size]) for i in range(0, len(clips), size)]
    done = map_tasks(_probe_chunk, chunks, workers=config.workers, backend=config.backend,
                     address=config.address)
    return [probe for chunk in done for probe in chunk]


def _entry(cand: Candidate, probe: Probe) -> tuple[ManifestEntry | None, str, str]:
    """``(entry, "", "")`` or ``(None, location, reason)`` for a missing/unreadable clip."""
    location, problem, header = probe
    if header is None:
        return None, location, problem
    rate, frames, channels = header
    total = frames / rate - cand.offset
    length = total if cand.duration is None else min(cand.duration, total)
    if length <= 0:
        return None, location, f"no audio after offset {cand.offset} s"
    return ManifestEntry(
        id=cand.id, audio=location, duration=round(length, 6),
        sample_rate=rate, captions=tuple(c.text for c in cand.captions),
        labels=dict(cand.labels), split=cand.split, offset=cand.offset,
        channels=channels, caption_info=cand.captions), "", ""


def _stats(entries: list[ManifestEntry]) -> dict[str, float]:
    return {"clips": len(entries), "captions": sum(len(e.captions) for e in entries),
            "hours": round(sum(e.duration for e in entries) / 3600, 6)}


def _usable(candidates: list[Candidate]) -> tuple[list[Candidate], list[dict]]:
    """The candidates that can make a clip (a caption, an id not seen before in its split:
    a manifest holds each id once) and the skipped rest (``{"id", "path", "reason"}``)."""
    usable, skipped, seen = [], [], set()
    for cand in candidates:
        where = scrub_url(cand.audio[0]) if cand.audio else ""
        if not any(c.text.strip() for c in cand.captions):
            skipped.append({"id": cand.id, "path": where, "reason": "no caption"})
        elif (cand.split, cand.id) in seen:
            skipped.append({"id": cand.id, "path": where,
                            "reason": f"id listed again in split {cand.split} (its first row "
                            "is kept)"})
        else:
            seen.add((cand.split, cand.id))
            usable.append(cand)
    return usable, skipped


def _manifest_paths(out_dir: str, config: RecipeConfig) -> dict[str, str]:
    suffix = ".jsonl.gz" if config.compress else ".jsonl"
    return {s: join(out_dir, s + suffix) for s in ("train", "test")}


def build_manifests(
    source: str, corpus: str, domain: str, candidates: list[Candidate],
    config: RecipeConfig, out_dir: str | Path, excluded: list[dict] | None = None,
    bad_rows: list[dict] | None = None,
) -> tuple[dict[str, str], dict]:
    """Probe, apply the budget, write ``out_dir/{train,test}.jsonl[.gz]`` and the report.

    ``excluded``: clips the recipe left out on purpose (``{"id", "reason"}``, e.g. listed in
    a corpus's own blacklist), reported in full and not counted against the budget.
    ``bad_rows``: metadata rows that made no candidate (:func:`bad_row`); they, candidates
    without a caption or with an id listed before, and clips whose audio is missing or
    unreadable are skipped and counted against the budget."""
    out_dir = str(out_dir)
    listed = len(candidates) + len(bad_rows or [])
    candidates, skipped = _usable(candidates)
    skipped = [*(bad_rows or []), *skipped]
    probed = [_entry(c, probe) for c, probe in zip(candidates, probe_headers(candidates, config),
                                                    strict=True)]
    skipped += [{"id": c.id, "path": scrub_url(loc), "reason": scrub_url(why)}
                for c, (entry, loc, why) in zip(candidates, probed) if entry is None]
    entries = [e for e, _, _ in probed if e is not None]
    entries = [replace(e, corpus=corpus, domain=domain) for e in entries]
    paths = _manifest_paths(out_dir, config)
    split_entries = {s: [e for e in entries if e.split == s] for s in paths}
    budget = math.floor(config.max_missing * listed)
    report = {"source": source, "config": config.recorded(),
              "listed": listed, "skipped_count": len(skipped), "budget": budget,
              "splits": {s: _stats(v) for s, v in split_entries.items()},
              "manifests": {s: scrub_url(p) for s, p in paths.items()}, "skipped": skipped}
    if excluded is not None:
        report["excluded_count"], report["excluded"] = len(excluded), excluded
    if not is_url(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    report_path = join(out_dir, REPORT)
    if len(skipped) > budget:
        with fsspec.open(report_path, "wt", encoding="utf-8") as handle:
            json.dump({**report, "failed": True}, handle, indent=1)
        first = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        raise DataError(scrub_url(
            f"{source}: {len(skipped)} of {listed} clips were skipped (missing or "
            f"unreadable audio, unusable metadata rows), over the budget of {budget} "
            f"(max_missing={config.max_missing}); first: {first}; full list in {report_path}. "
            f"Check root={config.root} and the file naming"))
    for split, path in paths.items():
        write_manifest(path, split_entries[split])
    with fsspec.open(report_path, "wt", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    return paths, report


def cached(out_dir: str | Path, source: str, config: RecipeConfig) -> dict | None:
    """The report of an earlier successful run with the same config, if its files remain.

    Every rank of a distributed run calls ``prepare``; the others reuse rank 0's manifests.
    """
    path = join(str(out_dir), REPORT)
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            report = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if (report.get("failed") or report.get("source") != source
            or report.get("config") != config.recorded()):
        return None
    # the report's paths are scrubbed: the real ones come from out_dir
    if not all(exists(p) for p in _manifest_paths(str(out_dir), config).values()):
        return None
    return report


class Recipe:
    """Base of the corpus recipes: ``prepare(out_dir)`` -> ``{"train": url, "test": url}``;
    the last run's report (clips, captions, hours per split, skipped clips) is ``.report``."""

    source = ""
    corpus = ""
    domain = ""

    def __init__(self, config: RecipeConfig, **_: object) -> None:
        self.config = config
        self.report: dict = {}
        #: clips :meth:`candidates` left out on purpose (``{"id", "reason"}``), if it does
        self.excluded: list[dict] | None = None
        #: metadata rows :meth:`candidates` could not read (:func:`bad_row`)
        self.bad_rows: list[dict] = []

    def candidates(self) -> list[Candidate]:  # pragma: no cover - each recipe defines it
        raise NotImplementedError

    def prepare(self, out_dir: str | Path) -> dict[str, str]:
        report = cached(out_dir, self.source, self.config)
        if report is None:
            self.bad_rows = []
            candidates = self.candidates()
            _, report = build_manifests(self.source, self.corpus, self.domain, candidates,
                                        self.config, out_dir, excluded=self.excluded,
                                        bad_rows=self.bad_rows)
        self.report = report  # its locations are scrubbed of URL credentials
        return _manifest_paths(str(out_dir), self.config)
