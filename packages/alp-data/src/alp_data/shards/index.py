"""The shard layout and its index.

A shard folder holds ``shard-000000.tar``, ``shard-000001.tar``, ... and ``index.json``. Each
tar holds one record per clip in the layout the ``webdataset`` library reads unchanged: two
members sharing a key, ``<key>.<codec>`` (the audio bytes; the file's own codec, or FLAC for
a segment cut out of a longer file) and ``<key>.json`` (the clip's manifest row without its
``audio`` path, plus ``audio_member``). Keys are ``<shard>_<position>`` (six digits each;
the position counts the clips of the shard from 0): webdataset splits a key at the first dot,
so clip ids, which may hold dots or slashes, live in the JSON.

``index.json`` lists every shard with its clip count, seconds of audio, bytes and the
duration of each clip in order, which is all a reader needs to split an epoch exactly over
ranks and workers and to plan duration-bucketed batches without opening a shard.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import fsspec

from alp_core.errors import DataError
from alp_data.scrub import scrub_url

__all__ = ["INDEX_NAME", "ShardIndex", "ShardInfo", "expand_braces", "member_key",
           "member_position", "open_shards", "read_index", "shard_name", "write_index"]

INDEX_NAME = "index.json"
FORMAT = "alp-shards"
VERSION = 1


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


def member_key(shard: int, position: int) -> str:
    """The webdataset key of the clip at ``position`` of shard ``shard``."""
    return f"{shard:06d}_{position:06d}"


def member_position(name: str) -> tuple[str, int, str]:
    """``(key, position in its shard, extension)`` of a member name such as
    ``000003_000017.flac``; a name of another form raises ``ValueError``."""
    key, _, ext = name.partition(".")
    shard, sep, position = key.partition("_")
    if not sep or not shard.isdigit() or not position.isdigit() or not ext:
        raise ValueError(f"tar member {name!r} is not <shard>_<position>.<ext>")
    return key, int(position), ext


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its URL or path, clip count, seconds of audio, bytes, per-clip seconds."""

    url: str
    clips: int
    seconds: float
    bytes: int
    durations: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.durations and len(self.durations) != self.clips:
            raise DataError(f"shard index: {scrub_url(self.url)} says {self.clips} clips but lists "
                            f"{len(self.durations)} durations")


@dataclass
class ShardIndex:
    """The shards of one split, in order, and how they were written."""

    shards: list[ShardInfo]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def clips(self) -> int:
        return sum(s.clips for s in self.shards)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.shards)

    def to_json(self, base: str | None = None) -> dict[str, Any]:
        """The ``index.json`` content; shard URLs under ``base`` are written relative."""
        rows = []
        for shard in self.shards:
            row = asdict(shard)
            row["durations"] = [round(d, 4) for d in shard.durations]
            if base is not None and shard.url.startswith(base.rstrip("/") + "/"):
                row["url"] = shard.url[len(base.rstrip("/")) + 1:]
            rows.append(row)
        return {"format": FORMAT, "version": VERSION, "clips": self.clips,
                "seconds": round(self.seconds, 3), **self.meta, "shards": rows}


def _join(base: str, name: str) -> str:
    return name if "://" in name or name.startswith("/") else posixpath.join(base, name)


def write_index(index: ShardIndex, folder: str) -> str:
    """Write ``folder/index.json`` (any fsspec URL) under a temporary name, then rename it:
    a reader finds the whole index or none. Returns its location."""
    location = _join(folder, INDEX_NAME)
    fs, final = fsspec.core.url_to_fs(location)
    partial = f"{final}.partial"
    with fs.open(partial, "wt", encoding="utf-8") as handle:
        json.dump(index.to_json(folder), handle, indent=1)
        handle.write("\n")
    fs.mv(partial, final)
    return location


def remove_index(folder: str) -> None:
    """Delete ``folder/index.json`` if there is one (before writing shards over old ones)."""
    fs, path = fsspec.core.url_to_fs(_join(folder, INDEX_NAME))
    if fs.exists(path):
        fs.rm(path)


def read_index(location: str) -> ShardIndex:
    """Read an ``index.json`` (a path or URL of the file, or of its folder)."""
    if not location.endswith(".json"):
        location = _join(location.rstrip("/"), INDEX_NAME)
    base = posixpath.dirname(location)
    try:
        with fsspec.open(location, "rt", encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError as err:
        raise DataError(f"shard index not found: {scrub_url(location)} (write shards with "
                        "`alp data shard MANIFEST --out DIR`, which writes DIR/index.json)"
                        ) from err
    except (ImportError, ValueError) as err:
        raise DataError(f"shard index {scrub_url(location)}: cannot read it "
                        f"({scrub_url(str(err))})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"shard index {scrub_url(location)}: not an ALP shard index (expected "
                        f'"format": "{FORMAT}")')
    shards = []
    for number, row in enumerate(raw.get("shards", [])):
        try:
            shards.append(ShardInfo(url=_join(base, row["url"]), clips=int(row["clips"]),
                                    seconds=float(row["seconds"]), bytes=int(row["bytes"]),
                                    durations=tuple(float(d) for d in row.get("durations", ()))))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"shard index {scrub_url(location)}: shard entry {number} is "
                            f"malformed ({scrub_url(repr(err))}); expected url, clips, seconds, "
                            "bytes, durations") from None
    meta = {k: v for k, v in raw.items()
            if k not in ("format", "version", "clips", "seconds", "shards")}
    return ShardIndex(shards, meta)


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{000..123}`` numeric ranges (zero-padded to the first bound's width) and
    ``{a,b}`` alternatives, as in webdataset/braceexpand shard URLs."""
    match = re.search(r"\{[^{}]*\}", pattern)
    if match is None:
        return [pattern]
    head, body, tail = pattern[:match.start()], match.group(0), pattern[match.end():]
    numeric = _RANGE.fullmatch(body)
    if numeric:
        lo, hi = numeric.group(1), numeric.group(2)
        width = len(lo) if lo.startswith("0") else 0
        step = 1 if int(hi) >= int(lo) else -1
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + step, step)]
    else:
        options = body[1:-1].split(",")
    return [out for opt in options for out in expand_braces(head + opt + tail)]


def open_shards(spec: str) -> ShardIndex:
    """The shards a ``data.source.shards`` split names: a shard folder (its ``index.json``),
    an ``index.json`` itself, or a brace pattern such as ``s3://b/c/shard-{000000..000099}.tar``
    whose folder holds the index (the pattern picks those shards, in its order)."""
    if "{" not in spec and not spec.endswith(".tar"):
        return read_index(spec)
    urls = expand_braces(spec)
    folder = posixpath.dirname(urls[0])
    index = read_index(folder)
    by_url = {s.url: s for s in index.shards}
    missing = [u for u in urls if u not in by_url]
    if missing:
        raise DataError(scrub_url(f"shards {spec}: {len(missing)} named shard(s) are not "
                                  f"in {_join(folder, INDEX_NAME)}, e.g. {missing[0]}"))
    return ShardIndex([by_url[u] for u in urls], index.meta)
