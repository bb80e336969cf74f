"""Manifest -> tar shards (``alp data shard``), written by parallel workers.

The clips are put in a seeded random order (so a stream reading shards in sequence is already
mixed), cut into shards of about ``target_size_mb`` (estimated from the audio files' sizes
before anything is written, so every shard is an independent task), and each shard is written
by one task of :func:`alp_data.parallel.map_tasks` (local processes or a Dask cluster). Tar
headers carry fixed times, owners and modes, so the same manifest, seed and size give the
same bytes for any number of workers. A clip whose audio cannot be read is left out and
listed in the index's ``skipped`` with the reason; ``max_missing`` bounds how many may be.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import soundfile as sf

from alp_core.errors import ConfigError, DataError
from alp_data.audio import WHOLE_FILE_TOLERANCE
from alp_data.manifest import ManifestEntry, is_url, read_manifest
from alp_data.parallel import map_tasks
from alp_data.scrub import safe_cause, scrub_url
from alp_data.shards.index import (
    ShardIndex,
    ShardInfo,
    member_key,
    remove_index,
    shard_name,
    write_index,
)

__all__ = ["ShardWriteReport", "write_shards"]

_HEADER = 512  # tar header / block size
_JSON_ESTIMATE = 1024  # bytes a record's JSON member takes with its header, about


@dataclass
class ShardWriteReport:
    """What :func:`write_shards` wrote and what it left out."""

    index: ShardIndex
    index_path: str
    skipped: list[dict[str, str]]
    listed: int


def _size(location: str) -> int:
    try:
        if is_url(location):
            fs, inner = fsspec.core.url_to_fs(location)
            return int(fs.size(inner) or 0)
        return os.path.getsize(location)
    except (OSError, ImportError, ValueError):
        return 0  # missing: the writing task reports it


def _plan_shards(entries: list[ManifestEntry], target_bytes: int,
                 max_clips: int | None) -> list[list[int]]:
    """Cut the (already ordered) entries into shards under the byte target."""
    shards: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, entry in enumerate(entries):
        est = _size(entry.audio) + 2 * _HEADER + _JSON_ESTIMATE
        if current and (size + est > target_bytes or
                        (max_clips is not None and len(current) >= max_clips)):
            shards.append(current)
            current, size = [], 0
        current.append(i)
        size += est
    if current:
        shards.append(current)
    return shards


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


def _audio_bytes(entry: ManifestEntry) -> tuple[str, bytes, float]:
    """``(codec extension, bytes, seconds)`` of the clip: the file itself, or, when the clip
    is a part of a longer file, its segment re-encoded (FLAC for integer PCM of up to 24 bits,
    else a float WAV: see :data:`_SEGMENT_CODECS`)."""
    try:
        with fsspec.open(entry.audio, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError as err:
        raise DataError(f"audio file not found: {scrub_url(entry.audio)}"
                        ) from safe_cause(err, entry.audio)
    except (OSError, ImportError, ValueError) as err:
        raise DataError(scrub_url(f"cannot read audio file {entry.audio}: {err}")
                        ) from safe_cause(err, entry.audio)
    try:
        with sf.SoundFile(io.BytesIO(raw)) as snd:
            native, frames, subtype = int(snd.samplerate), int(snd.frames), snd.subtype
            file_seconds = frames / native
            whole = entry.offset <= 0 and (
                entry.duration <= 0 or abs(file_seconds - entry.duration) <= WHOLE_FILE_TOLERANCE)
            if whole:
                if frames == 0:
                    raise DataError(f"audio file {entry.audio} holds no samples")
                ext = posixpath.splitext(entry.audio.split("?")[0])[1].lstrip(".").lower()
                return ext or "wav", raw, file_seconds
            start = int(round(entry.offset * native))
            snd.seek(min(start, frames))
            # integer PCM of up to 24 bits as FLAC from integer samples (exact); anything
            # else (float, 32-bit, lossy codecs) as a float WAV of the decoded samples, which
            # keeps values past +-1 (a FLAC of clipped floats changed the features)
            fmt, stored, dtype = _SEGMENT_CODECS.get(subtype, ("WAV", "FLOAT", "float32"))
            data = snd.read(int(round(entry.duration * native)), dtype=dtype, always_2d=True)
    except DataError:
        raise
    except (RuntimeError, ValueError, TypeError) as err:
        raise DataError(f"cannot decode audio file {entry.audio}: {err}") from err
    if data.shape[0] == 0:
        raise DataError(f"audio file {entry.audio}: no samples at offset {entry.offset} s")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise DataError(f"audio file {entry.audio}: non-finite samples (NaN or inf) in the "
                        f"segment at offset {entry.offset} s")
    out = io.BytesIO()
    sf.write(out, data, native, format=fmt, subtype=stored)
    return fmt.lower(), out.getvalue(), data.shape[0] / native


#: libsndfile subtype of a segment's file -> (container, stored subtype, samples read as)
_SEGMENT_CODECS = {
    "PCM_16": ("FLAC", "PCM_16", "int16"), "PCM_S8": ("FLAC", "PCM_16", "int16"),
    "PCM_U8": ("FLAC", "PCM_16", "int16"), "ULAW": ("FLAC", "PCM_16", "int16"),
    "ALAW": ("FLAC", "PCM_16", "int16"), "PCM_24": ("FLAC", "PCM_24", "int32"),
    "DOUBLE": ("WAV", "DOUBLE", "float64"),
}


def _write_one(task: dict[str, Any]) -> dict[str, Any]:
    """Write one shard (runs in a worker): returns its clips, seconds, sizes and failures."""
    durations: list[float] = []
    skipped: list[dict[str, str]] = []
    # written under a temporary name and renamed when complete: a writer that fails midway
    # leaves no partial shard under a shard's name
    fs, final = fsspec.core.url_to_fs(task["url"])
    partial = f"{final}.partial"
    try:
        _write_records(task, fs, partial, durations, skipped)
    except BaseException:
        if fs.exists(partial):
            fs.rm(partial)
        raise
    fs.mv(partial, final)
    size = int(fs.size(final))
    return {"url": task["url"], "durations": durations, "bytes": size, "skipped": skipped}


def _write_records(task: dict[str, Any], fs: Any, partial: str, durations: list[float],
                   skipped: list[dict[str, str]]) -> None:
    """The shard's records into the tar at ``partial``; fills ``durations`` and ``skipped``."""
    with fs.open(partial, "wb") as raw, \
            tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for row in task["rows"]:
            key = member_key(task["shard"], len(durations))
            entry = ManifestEntry(**{**row, "captions": tuple(row["captions"])})
            try:
                ext, data, seconds = _audio_bytes(entry)
            except DataError as err:
                skipped.append({"id": entry.id, "path": scrub_url(entry.audio),
                                "error": scrub_url(str(err))})
                continue
            meta = entry.to_row()
            del meta["audio"]
            # the manifest's duration where the member is the whole file, else the segment's
            whole = entry.offset <= 0 and entry.duration > 0 and \
                abs(seconds - entry.duration) <= WHOLE_FILE_TOLERANCE
            meta["duration"] = entry.duration if whole else round(seconds, 6)
            meta.pop("offset", None)  # the member holds exactly the clip
            meta["audio_member"] = f"{key}.{ext}"
            tar.addfile(*_member(f"{key}.{ext}", data))
            tar.addfile(*_member(f"{key}.json", json.dumps(meta, ensure_ascii=False)
                                 .encode("utf-8")))
            durations.append(float(meta["duration"]))


def _row(entry: ManifestEntry) -> dict[str, Any]:
    return {"id": entry.id, "audio": entry.audio, "duration": entry.duration,
            "sample_rate": entry.sample_rate, "captions": list(entry.captions),
            "labels": dict(entry.labels), "split": entry.split, "offset": entry.offset,
            "channels": entry.channels, "corpus": entry.corpus, "domain": entry.domain,
            "caption_info": entry.caption_info}


def write_shards(
    manifest: str | list[ManifestEntry],
    out: str,
    *,
    target_size_mb: float = 256.0,
    max_clips_per_shard: int | None = None,
    seed: int = 0,
    shuffle: bool = True,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
    max_missing: float = 0.01,
) -> ShardWriteReport:
    """Write the clips of ``manifest`` (a path/URL or entries) as tar shards under ``out``.

    Returns the report; ``out/index.json`` is written even when more than ``max_missing``
    (a fraction of the clips) could not be read, and then a :class:`DataError` follows that
    names how many and the first of them (the shards written stay usable).
    """
    if target_size_mb <= 0:
        raise ConfigError(f"target_size_mb must be > 0 (megabytes), got {target_size_mb}")
    if max_clips_per_shard is not None and max_clips_per_shard < 1:
        raise ConfigError(f"max_clips_per_shard must be >= 1, got {max_clips_per_shard}")
    if not 0 <= max_missing <= 1:
        raise ConfigError(f"max_missing must be a fraction in [0, 1], got {max_missing}")
    entries = read_manifest(manifest) if isinstance(manifest, str) else list(manifest)
    if not entries:
        raise DataError(f"{manifest if isinstance(manifest, str) else 'entries'}: no clips "
                        "to shard")
    order = np.random.default_rng(seed).permutation(len(entries)) if shuffle \
        else np.arange(len(entries))
    entries = [entries[i] for i in order]
    out = out.rstrip("/")
    if not is_url(out):
        os.makedirs(out, exist_ok=True)
    else:
        fs, inner = fsspec.core.url_to_fs(out)
        fs.makedirs(inner, exist_ok=True)
    remove_index(out)  # an index of earlier shards must not describe a half-written set
    groups = _plan_shards(entries, int(target_size_mb * 1e6), max_clips_per_shard)
    tasks = [{"url": posixpath.join(out, shard_name(number)), "shard": number,
              "rows": [_row(entries[i]) for i in group]} for number, group in enumerate(groups)]
    results = map_tasks(_write_one, tasks, workers=workers, backend=backend, address=address)
    shards = [ShardInfo(url=r["url"], clips=len(r["durations"]),
                        seconds=float(sum(r["durations"])), bytes=int(r["bytes"]),
                        durations=tuple(r["durations"])) for r in results]
    skipped = [s for r in results for s in r["skipped"]]
    index = ShardIndex([s for s in shards if s.clips > 0],
                       {"seed": seed, "shuffle": shuffle, "target_size_mb": target_size_mb,
                        "listed": len(entries), "skipped": skipped})
    for empty in (s for s in shards if s.clips == 0):  # every clip of it failed
        fs, inner = fsspec.core.url_to_fs(empty.url)
        fs.rm(inner)
    location = write_index(index, out)
    report = ShardWriteReport(index, location, skipped, len(entries))
    if len(skipped) > max_missing * len(entries):
        first = ", ".join(s["path"] for s in skipped[:5])
        raise DataError(f"{len(skipped)} of {len(entries)} clips could not be read, over "
                        f"max_missing={max_missing}; the shards written are listed in "
                        f"{scrub_url(location)} (skipped clips: {first}"
                        f"{' ...' if len(skipped) > 5 else ''})")
    return report
