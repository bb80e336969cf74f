"""What every corpus recipe shares: reading its CSVs, probing audio, the missing-file budget.

A recipe lists :class:`Candidate` clips from the corpus metadata; :func:`build_manifests`
opens each audio header (duration, rate, channels), skips clips whose audio is missing or
unreadable within the ``max_missing`` budget, and writes ``train``/``test`` manifests and a
``prepare_report.json`` that lists every skipped clip with its reason. Downloads of YouTube
corpora always miss some clips, so a few are expected; past the budget it is an error that
names the first missing files, because then the root or the file naming is probably wrong.
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
from pydantic import Field

from alp_core import ComponentConfig
from alp_core.errors import DataError
from alp_data.manifest import Caption, ManifestEntry, is_url, write_manifest

REPORT = "prepare_report.json"


class RecipeConfig(ComponentConfig):
    """Options every corpus recipe takes."""

    root: str = Field(description="the corpus folder (local path or fsspec URL)")
    max_missing: float = Field(0.1, ge=0, le=1, description="largest fraction of listed "
                               "clips whose audio may be missing or unreadable (skipped)")
    val_to: Literal["train", "test", "drop"] = Field(
        "train", description="where the corpus's validation split goes")
    compress: bool = Field(False, description="write train.jsonl.gz/test.jsonl.gz")
    workers: int = Field(8, ge=1, description="threads probing audio headers")


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
    """``root/part/...`` for a local folder or an fsspec URL."""
    return posixpath.join(root, *parts) if is_url(root) else os.path.join(root, *parts)


def exists(path: str) -> bool:
    """Whether a local path or fsspec URL names an existing file."""
    fs, inner = fsspec.core.url_to_fs(path)
    return bool(fs.isfile(inner))


def route(split: str, config: RecipeConfig) -> str | None:
    """The ALP split of a corpus split name (``val`` follows ``val_to``; None: dropped)."""
    if split in ("train", "test"):
        return split
    return None if config.val_to == "drop" else config.val_to


def read_csv(path: str, columns: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a UTF-8 CSV; a missing file or column is a :class:`DataError` naming it."""
    try:
        with fsspec.open(path, "rb") as handle:
            text = handle.read().decode("utf-8-sig")
    except FileNotFoundError as err:
        raise DataError(f"corpus metadata file not found: {path}") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 at byte offset {err.start}") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    lacking = [c for c in columns if c not in (reader.fieldnames or [])]
    if lacking:
        raise DataError(f"{path}: column(s) {', '.join(lacking)} missing; found "
                        f"{', '.join(reader.fieldnames or [])}")
    return list(reader)


def _probe(cand: Candidate) -> tuple[ManifestEntry | None, str, str]:
    """``(entry, "", "")`` or ``(None, location, reason)`` for a missing/unreadable clip."""
    for location in cand.audio:
        try:
            with fsspec.open(location, "rb") as handle:
                info = sf.info(handle)
        except FileNotFoundError:
            continue
        except (RuntimeError, OSError, ValueError, TypeError) as err:
            return None, location, f"unreadable: {err}"
        total = info.frames / info.samplerate - cand.offset
        length = total if cand.duration is None else min(cand.duration, total)
        if length <= 0:
            return None, location, f"no audio after offset {cand.offset} s"
        return ManifestEntry(
            id=cand.id, audio=location, duration=round(length, 6),
            sample_rate=int(info.samplerate), captions=tuple(c.text for c in cand.captions),
            labels=dict(cand.labels), split=cand.split, offset=cand.offset,
            channels=int(info.channels), caption_info=cand.captions), "", ""
    return None, cand.audio[0], "missing"


def _stats(entries: list[ManifestEntry]) -> dict[str, float]:
    return {"clips": len(entries), "captions": sum(len(e.captions) for e in entries),
            "hours": round(sum(e.duration for e in entries) / 3600, 6)}


def build_manifests(
    source: str, corpus: str, domain: str, candidates: list[Candidate],
    config: RecipeConfig, out_dir: str | Path,
) -> tuple[dict[str, str], dict]:
    """Probe, apply the budget, write ``out_dir/{train,test}.jsonl[.gz]`` and the report."""
    out_dir = str(out_dir)
    with ThreadPoolExecutor(config.workers) as pool:
        probed = list(pool.map(_probe, candidates))
    skipped = [{"id": c.id, "path": loc, "reason": why}
               for c, (entry, loc, why) in zip(candidates, probed) if entry is None]
    entries = [e for e, _, _ in probed if e is not None]
    entries = [replace(e, corpus=corpus, domain=domain) for e in entries]
    suffix = ".jsonl.gz" if config.compress else ".jsonl"
    paths = {s: join(out_dir, s + suffix) for s in ("train", "test")}
    split_entries = {s: [e for e in entries if e.split == s] for s in paths}
    budget = math.floor(config.max_missing * len(candidates))
    report = {"source": source, "config": config.model_dump(mode="json"),
              "listed": len(candidates), "skipped_count": len(skipped), "budget": budget,
              "splits": {s: _stats(v) for s, v in split_entries.items()},
              "manifests": paths, "skipped": skipped}
    if not is_url(out_dir):
        os.makedirs(out_dir, exist_ok=True)
    report_path = join(out_dir, REPORT)
    if len(skipped) > budget:
        with fsspec.open(report_path, "wt", encoding="utf-8") as handle:
            json.dump({**report, "failed": True}, handle, indent=1)
        first = "; ".join(f"{s['path']} ({s['reason']})" for s in skipped[:5])
        raise DataError(
            f"{source}: {len(skipped)} of {len(candidates)} clips have missing or unreadable "
            f"audio, over the budget of {budget} (max_missing={config.max_missing}); first: "
            f"{first}; full list in {report_path}. Check root={config.root} and the file naming")
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
            or report.get("config") != config.model_dump(mode="json")):
        return None
    fs_paths = report.get("manifests", {})
    ok = all(exists(p) for p in fs_paths.values())
    return report if ok and fs_paths else None


class Recipe:
    """Base of the corpus recipes: ``prepare(out_dir)`` -> ``{"train": url, "test": url}``;
    the last run's report (clips, captions, hours per split, skipped clips) is ``.report``."""

    source = ""
    corpus = ""
    domain = ""

    def __init__(self, config: RecipeConfig, **_: object) -> None:
        self.config = config
        self.report: dict = {}

    def candidates(self) -> list[Candidate]:  # pragma: no cover - each recipe defines it
        raise NotImplementedError

    def prepare(self, out_dir: str | Path) -> dict[str, str]:
        report = cached(out_dir, self.source, self.config)
        if report is None:
            _, report = build_manifests(self.source, self.corpus, self.domain,
                                        self.candidates(), self.config, out_dir)
        self.report = report
        return dict(report["manifests"])
