"""A benchmark round as ALP manifests, so the existing data pipeline can embed its clips.

Each clip becomes one manifest row (``alp_data.manifest`` schema) with ``split`` set to its
role in the round (train/val/test) and its labels under:

- multiclass: ``{"label": "<class>"}``;
- multilabel: ``{"labels": "<class>;<class>"}`` (classes of the clip in vocabulary order,
  ``;``-joined, empty for a clip without any);
- sed: ``{"labels": ...}`` as multilabel plus ``{"events": "[[onset, offset, label], ...]"}``
  (JSON text, since manifest label values are strings).

The caption is the clip's class names (underscores as spaces, ``, ``-joined; ``"no label"``
when none), only so the rows are valid manifests. Durations, sample rates and channels come
from each file's header, read with soundfile (installed with alp-data); :func:`to_manifests`
builds ``alp_data.manifest.ManifestEntry`` objects and therefore needs alp-data, while
:func:`write_manifests` writes JSONL with the standard library.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from alp_core.errors import DataError
from alp_eval.datasets.base import Benchmark, BenchmarkClip

if TYPE_CHECKING:
    from alp_data.manifest import ManifestEntry

__all__ = ["manifest_rows", "to_manifests", "write_manifests"]

LABEL_SEPARATOR = ";"


def _labels(bench: Benchmark, clip: BenchmarkClip) -> dict[str, str]:
    if bench.task == "multiclass":
        return {"label": clip.labels[0]}
    labels = {"labels": LABEL_SEPARATOR.join(clip.labels)}
    if bench.task == "sed":
        labels["events"] = json.dumps([list(ev) for ev in clip.events])
    return labels


def _probe(clip: BenchmarkClip) -> tuple[float, int, int] | str:
    """``(seconds in the segment, sample rate, channels)`` or why the header is unreadable."""
    import soundfile as sf

    try:
        info = sf.info(clip.path)
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        return f"unreadable: {err}"
    total = info.frames / info.samplerate - clip.offset
    length = total if clip.duration is None else min(clip.duration, total)
    if length <= 0:
        return f"no audio after offset {clip.offset} s"
    return round(length, 6), int(info.samplerate), int(info.channels)


def manifest_rows(bench: Benchmark, round_index: int = 0, *, workers: int = 8
                  ) -> dict[str, list[dict[str, Any]]]:
    """JSON rows of protocol round ``round_index`` by role (train/val/test; empty roles too).

    An unreadable audio header is a :class:`DataError` naming the first files, since the
    loader already accounted for missing ones.
    """
    if any(LABEL_SEPARATOR in c for c in bench.classes) and bench.task != "multiclass":
        raise DataError(f"{bench.name}: a class name contains {LABEL_SEPARATOR!r}, the "
                        "multi-label separator of the manifest labels")
    roles = bench.round_clips(round_index)
    every = [clip for clips in roles.values() for clip in clips]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        probed = dict(zip((c.id for c in every), pool.map(_probe, every)))
    bad = [f"{c.path} ({probed[c.id]})" for c in every if isinstance(probed[c.id], str)]
    if bad:
        raise DataError(f"{bench.name}: {len(bad)} clips have unreadable audio; first: "
                        f"{'; '.join(bad[:5])}. Remove them (the loader then skips them) "
                        "or replace them")
    out: dict[str, list[dict[str, Any]]] = {}
    for role, clips in roles.items():
        rows = []
        for clip in clips:
            seconds, rate, channels = cast("tuple[float, int, int]", probed[clip.id])
            caption = ", ".join(lab.replace("_", " ") for lab in clip.labels) or "no label"
            row: dict[str, Any] = {
                "id": clip.id, "audio": clip.path, "duration": seconds, "sample_rate": rate,
                "captions": [caption], "labels": _labels(bench, clip), "split": role,
                "channels": channels, "corpus": bench.name, "domain": bench.domain}
            if clip.offset:
                row["offset"] = clip.offset
            rows.append(row)
        out[role] = rows
    return out


def to_manifests(bench: Benchmark, round_index: int = 0, *, workers: int = 8
                 ) -> dict[str, list[ManifestEntry]]:
    """``alp_data.manifest.ManifestEntry`` s of round ``round_index`` by role (needs alp-data)."""
    from alp_data.manifest import ManifestEntry

    rows = manifest_rows(bench, round_index, workers=workers)
    return {role: [ManifestEntry(
        id=r["id"], audio=r["audio"], duration=r["duration"], sample_rate=r["sample_rate"],
        captions=tuple(r["captions"]), labels=r["labels"], split=r["split"],
        offset=r.get("offset", 0.0), channels=r["channels"], corpus=r["corpus"],
        domain=r["domain"]) for r in role_rows] for role, role_rows in rows.items()}


def write_manifests(bench: Benchmark, out_dir: str | os.PathLike, round_index: int = 0, *,
                    workers: int = 8) -> dict[str, str]:
    """Write ``out_dir/{train,val,test}.jsonl`` of round ``round_index`` (roles without clips
    are not written) and return their paths; audio paths stay absolute."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, rows in manifest_rows(bench, round_index, workers=workers).items():
        if not rows:
            continue
        path = out / f"{role}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        paths[role] = str(path)
    return paths
