"""The regular-file members of a tar shard, front to back: ``(name, data)``.

A shard on the local disk is mapped into memory and walked by a small reader of the formats
``write_shards`` and webdataset produce (ustar/GNU headers, pax ``x``/``g`` records, GNU long
names): a member's data come out as a ``memoryview`` of the map, copied once, when the audio
decoder reads them. Any other URL goes through :mod:`tarfile` (in place on a seekable handle,
in stream mode otherwise). Both report damage alike: a shard cut inside a member's data gives
that member last, with a :class:`tarfile.ReadError` ("unexpected end of data") as its data; a
header cut short, all zeros, or failing its checksum ends the shard there (raising only for
the first header, as :mod:`tarfile` does); links, folders and unknown member types are
skipped; a GNU sparse file sends the whole shard through :mod:`tarfile` if it comes first
and is an error otherwise.
"""

from __future__ import annotations

import mmap
import os
import tarfile
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

__all__ = ["iter_members"]

_BLOCK = 512
_FILE_TYPES = (b"0", b"\x00", b"7")  # regular and contiguous files (tarfile's isfile, no sparse)
_STREAM_BUFFER = 1 << 16  # tarfile's stream-mode buffer (its 10 KiB default reads slower)


class _Unsupported(Exception):
    """A member this reader does not parse (handed to :mod:`tarfile` when nothing was read)."""


Member = tuple[str, "bytes | memoryview | tarfile.ReadError"]


def iter_members(url: str) -> Iterator[Member]:
    """``(name, data)`` of every regular-file member of the tar at ``url``, in order. A member
    whose data the tar cuts short comes last, with the :class:`tarfile.ReadError` as its data
    (so the caller knows which member it lost); damage found between members raises it."""
    fs, path = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        yield from _local_members(path)
        return
    yield from _tarfile_members(url)


def _tarfile_members(url: str) -> Iterator[Member]:
    with fsspec.open(url, "rb") as handle, _open_tar(handle) as tar:
        for member in tar:
            if member.isfile():
                data = tar.extractfile(member)
                try:
                    yield member.name, data.read() if data is not None else b""
                except tarfile.ReadError as err:  # raised by read(): the data are cut
                    yield member.name, err
                    return


def _open_tar(handle: Any) -> tarfile.TarFile:
    """A seekable handle reads each member in one call and skips over headers; tarfile's
    stream mode, for the rest, copies through a small buffer many times over."""
    seekable = getattr(handle, "seekable", None)
    if seekable is not None and seekable():
        return tarfile.open(fileobj=handle, mode="r:")
    return tarfile.open(fileobj=handle, mode="r|", bufsize=_STREAM_BUFFER)


def _local_members(path: str) -> Iterator[Member]:
    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise tarfile.ReadError("empty file")
        view = memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
    done = 0
    try:
        for name, data in _walk(view):
            yield name, data
            done += 1
    except _Unsupported:
        if done:
            raise tarfile.ReadError(f"unsupported tar member after {done} members") from None
        yield from _tarfile_members(path)


def _walk(view: memoryview) -> Iterator[Member]:
    offset, end = 0, len(view)
    long_name: str | None = None
    pax: dict[str, str] = {}
    while True:
        header = bytes(view[offset:offset + _BLOCK])
        if len(header) < _BLOCK:
            if offset == 0:
                raise tarfile.ReadError("truncated header")
            return
        if not header.strip(b"\x00"):  # an end-of-archive block
            return
        try:
            valid = _checksum_matches(header, _nti(header[148:156]))
            size = _nti(header[124:136])
        except ValueError:
            valid = False
        if not valid:  # as tarfile: an error for the first header, else the end
            if offset == 0:
                raise tarfile.ReadError("bad checksum")
            return
        kind = header[156:157]
        start = offset + _BLOCK
        offset = start + -(-size // _BLOCK) * _BLOCK
        if kind in (b"L", b"x", b"g", b"K"):  # headers about the next member
            if start + size > end:
                raise tarfile.ReadError("missing or bad subsequent header")
            body = bytes(view[start:start + size])
            if kind == b"L":
                long_name = _nts(body, "utf-8", "surrogateescape")
            elif kind == b"x":
                pax.update(_pax_records(body))
            continue
        name = long_name or _ustar_name(header)
        if "path" in pax:
            name = pax["path"]
        if "size" in pax:
            size = int(pax["size"])
            offset = start + -(-size // _BLOCK) * _BLOCK
        long_name, pax = None, {}
        if kind == b"S":  # a GNU sparse file: its data are not laid out as stored
            raise _Unsupported(kind)
        if kind not in _FILE_TYPES:  # links, devices, folders, FIFOs, unknown types
            continue
        if start + size > end:
            yield name, tarfile.ReadError("unexpected end of data")
            return
        yield name, view[start:start + size]


def _nts(field: bytes, encoding: str = "utf-8", errors: str = "surrogateescape") -> str:
    """A NUL-terminated header string."""
    end = field.find(b"\x00")
    return (field if end < 0 else field[:end]).decode(encoding, errors)


def _nti(field: bytes) -> int:
    """A header number: octal digits, or GNU's base-256 (first byte 0x80, or 0xff negative)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    return int(_nts(field, "ascii", "strict").strip() or "0", 8)


_HIGH_BYTES = bytes(range(128, 256))


def _checksum_matches(header: bytes, stored: int) -> bool:
    """Whether ``stored`` is the header's checksum (its own field counted as spaces), summed
    over unsigned bytes or, as some old tars wrote it, over signed ones."""
    body = header[:148] + b" " * 8 + header[156:_BLOCK]
    unsigned = sum(body)
    if stored == unsigned:
        return True
    high = len(body) - len(body.translate(None, _HIGH_BYTES))  # bytes > 127
    return stored == unsigned - 256 * high


def _ustar_name(header: bytes) -> str:
    name = _nts(header[0:100], "utf-8", "surrogateescape")
    if header[257:263] == b"ustar\x00":  # POSIX: a prefix field holds the leading folders
        prefix = _nts(header[345:500], "utf-8", "surrogateescape")
        if prefix:
            name = f"{prefix}/{name}"
    return name


def _pax_records(body: bytes) -> dict[str, str]:
    """The ``key=value`` records of a pax extended header (``"<len> <key>=<value>\\n"``)."""
    records, pos = {}, 0
    while pos < len(body) and body[pos:pos + 1] != b"\x00":
        space = body.index(b" ", pos)
        length = int(body[pos:space])
        if length <= 0:
            raise tarfile.ReadError("invalid pax header")
        key, _, value = body[space + 1:pos + length - 1].partition(b"=")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8",
                                                                        "surrogateescape")
        pos += length
    return records
