"""A cache of extracted embeddings at any fsspec location, reused across tasks and runs.

An entry is keyed by a JSON-able mapping (``alp eval``: the encoder's fingerprint, the
dataset's name, :func:`clip_list_digest` of its clips and the extraction settings); its folder
is ``<root>/<namespace>/<blake2b of the key>/`` and holds one ``.npy`` per array plus
``meta.json``, the sidecar: the full key, each array's shape, dtype, size and digest, and the
caller's metadata. Every file is written under a temporary name and renamed into place, the
sidecar last, so a reader never takes a half-written entry: an entry without its sidecar, with
a sidecar for another key, or with an array whose bytes do not match the recorded digest is a
miss (counted as ``corrupt``) and is recomputed and rewritten by the caller. Arrays are loaded
with ``allow_pickle=False``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

__all__ = ["CacheEntry", "EmbeddingCache", "clip_list_digest", "key_digest"]

META = "meta.json"
FORMAT = "alp-eval-cache/1"


def key_digest(key: Mapping[str, Any]) -> str:
    """A stable hex digest of a JSON-able key (sorted keys, no whitespace)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _file_stamp(path: str) -> tuple[int | None, float | None]:
    """(size, mtime) of a local file or fsspec URL; (None, None) when it cannot be read."""
    try:
        if "://" not in path:
            stat = os.stat(path)
            return stat.st_size, stat.st_mtime
        fs, inner = fsspec.core.url_to_fs(path)
        info = fs.info(inner)
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
        return info.get("size"), (mtime.timestamp() if hasattr(mtime, "timestamp") else mtime)
    except (OSError, ValueError, ImportError):
        return None, None


def clip_list_digest(clips: Iterable[Any]) -> str:
    """Digest of a clip list: each clip's id, path, offset, duration and its file's size and
    modification time, in order. A changed, added, removed or re-encoded file changes it."""
    digest = hashlib.blake2b(digest_size=16)
    for clip in clips:
        size, mtime = _file_stamp(clip.path)
        row = [clip.id, clip.path, clip.offset, clip.duration, size, mtime]
        digest.update(json.dumps(row, default=str).encode() + b"\n")
    return digest.hexdigest()


def _array_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class CacheEntry:
    """A loaded entry: its arrays by name and the metadata stored with them."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


@dataclass
class EmbeddingCache:
    """Arrays + JSON sidecar per key under ``url`` (a local folder or any fsspec URL).

    ``stats`` counts ``hits``, ``misses`` (no entry), ``corrupt`` (an unusable entry, also a
    miss) and ``writes``.
    """

    url: str
    stats: dict[str, int] = field(
        default_factory=lambda: {"hits": 0, "misses": 0, "corrupt": 0, "writes": 0})

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(str(self.url))
        self.root = self.root.rstrip("/")

    def folder(self, namespace: str, key: Mapping[str, Any]) -> str:
        """Where the entry of ``key`` lives (``<root>/<namespace>/<digest>``)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in namespace) or "_"
        return f"{self.root}/{safe}/{key_digest(key)}"

    def get(self, namespace: str, key: Mapping[str, Any],
            require: Iterable[str] = ()) -> CacheEntry | None:
        """The entry of ``key`` if it is complete, intact and holds every array in
        ``require``; else None (a miss; ``corrupt`` when an unusable entry was there)."""
        folder = self.folder(namespace, key)
        try:
            raw = self.fs.cat_file(f"{folder}/{META}")
        except (FileNotFoundError, OSError):
            self.stats["misses"] += 1
            return None
        entry, status = self._read(folder, raw, dict(key), set(require))
        self.stats[status] += 1
        return entry

    def _read(self, folder: str, raw: bytes, key: dict[str, Any], require: set[str]
              ) -> tuple[CacheEntry | None, str]:
        """The entry and ``hits``, or None and ``misses`` (arrays not stored) / ``corrupt``."""
        try:
            meta = json.loads(raw)
            if meta.get("format") != FORMAT or meta.get("key") != json.loads(
                    json.dumps(key, default=str)):
                return None, "corrupt"
            described = meta["arrays"]
            if not require <= set(described):
                return None, "misses"
            arrays = {}
            for name, info in described.items():
                data = self.fs.cat_file(f"{folder}/{name}.npy")
                if (len(data) != info["bytes"]
                        or hashlib.blake2b(data, digest_size=16).hexdigest() != info["digest"]):
                    return None, "corrupt"
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if list(array.shape) != info["shape"] or str(array.dtype) != info["dtype"]:
                    return None, "corrupt"
                arrays[name] = array
        except (OSError, ValueError, KeyError, TypeError, EOFError):
            return None, "corrupt"
        return CacheEntry(arrays, meta.get("meta", {})), "hits"

    def _put_file(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
        self.fs.pipe_file(tmp, data)
        try:
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def put(self, namespace: str, key: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
            meta: Mapping[str, Any] | None = None) -> str:
        """Write an entry (arrays first, the sidecar last, each atomically); its folder."""
        folder = self.folder(namespace, key)
        self.fs.makedirs(folder, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm(f"{folder}/{META}")  # first: no reader pairs it with the new arrays
        described = {}
        for name, array in arrays.items():
            data = _array_bytes(array)
            self._put_file(f"{folder}/{name}.npy", data)
            described[name] = {"shape": list(array.shape), "dtype": str(array.dtype),
                               "bytes": len(data),
                               "digest": hashlib.blake2b(data, digest_size=16).hexdigest()}
        sidecar = {"format": FORMAT, "key": json.loads(json.dumps(dict(key), default=str)),
                   "arrays": described, "meta": dict(meta or {})}
        self._put_file(f"{folder}/{META}", json.dumps(sidecar, indent=1).encode())
        self.stats["writes"] += 1
        return folder
