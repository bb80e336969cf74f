"""Streaming clips from tar shards: an iterable dataset with an exact, resumable order.

:class:`ShardStream` reads the shards of an index (any fsspec URL) in the order an
:class:`~alp_data.shards.plan.EpochPlan` lays out, keeps the raw members of a shuffle window
in memory, and yields collated batches built by the same
:class:`~alp_data.transform.ClipTransform` as map-style data. :func:`build_stream_loader`
wraps it in a :class:`ShardLoader` (a DataLoader with ``len()``, ``set_epoch``, ``skip`` and
``state_dict``/``load_state_dict``).

A damaged tar (truncated, unreadable member, missing JSON or audio member, invalid JSON) or a
missing shard never stops the stream: the clips it should have given become
:class:`~alp_data.transform.BadClip` entries in their batch's ``skipped`` list, which the
training loop counts against ``data.max_bad_clips``.
"""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from alp_core.errors import DataError
from alp_data.collate import Collator
from alp_data.manifest import ManifestEntry, _check_row
from alp_data.scrub import scrub_url
from alp_data.shards.index import ShardIndex, member_position
from alp_data.shards.plan import EpochPlan, PlanConfig
from alp_data.shards.tar import iter_members
from alp_data.transform import BadClip, ClipRequest, ClipTransform

__all__ = ["ShardLoader", "ShardStream", "build_stream_loader"]


def _identity(batch: Any) -> Any:
    return batch


class ShardStream(IterableDataset):
    """Batches of one rank of a sharded split; see the module and plan docstrings.

    The epoch and the resume point live in shared memory, so persistent loader workers see
    :meth:`set_epoch` and :meth:`skip` calls made in the main process.
    """

    def __init__(self, index: ShardIndex, transform: ClipTransform, collator: Collator,
                 plan: PlanConfig, *, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0) -> None:
        self.index, self.transform, self.collator, self.plan_config = (
            index, transform, collator, plan)
        self.rank, self.world_size, self.num_workers = rank, world_size, num_workers
        # [epoch, epoch the skip applies to, batches to skip]
        self._state = torch.tensor([0, -1, 0], dtype=torch.int64).share_memory_()
        self._plans: dict[int, EpochPlan] = {}

    # -- epoch and position ---------------------------------------------------------------
    @property
    def epoch(self) -> int:
        return int(self._state[0])

    def set_epoch(self, epoch: int) -> None:
        self._state[0] = int(epoch)

    def skip(self, count: int) -> None:
        """Start the current epoch's next iteration after its first ``count`` batches."""
        if count < 0:
            raise ValueError(f"cannot skip {count} batches")
        self.plan(self.epoch).resume(self.rank, count)  # checks the range
        self._state[1], self._state[2] = self.epoch, int(count)

    def plan(self, epoch: int) -> EpochPlan:
        if epoch not in self._plans:
            self._plans = {epoch: EpochPlan(self.index, self.plan_config, epoch,
                                            world_size=self.world_size,
                                            num_workers=self.num_workers)}
        return self._plans[epoch]

    def __len__(self) -> int:
        return self.plan(self.epoch).num_batches(self.rank)

    def durations(self) -> list[float]:
        """Seconds of every clip of the split (all ranks), in index order."""
        return [d for s in self.index.shards for d in s.durations]

    # -- reading ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        plan = self.plan(epoch)
        info = get_worker_info()
        slot = info.id if info is not None else 0
        consumed = int(self._state[2]) if int(self._state[1]) == epoch else 0
        first, starts = plan.resume(self.rank, consumed)
        worker = (slot + first) % plan.workers
        batches = plan.worker_batches(self.rank, worker)[starts[worker]:]
        if batches:
            yield from self._read(plan, batches, epoch)

    def _read(self, plan: EpochPlan, batches: list[np.ndarray], epoch: int
              ) -> Iterator[dict[str, Any]]:
        wanted = np.concatenate(batches)
        records: dict[int, tuple[Any, ...]] = {}
        members = self._members(plan, int(wanted.min()), int(wanted.max()) + 1,
                                set(wanted.tolist()))
        for batch in batches:
            items: list[ClipRequest | BadClip] = []
            for position in batch.tolist():
                while position not in records:
                    try:
                        got = next(members)
                    except StopIteration:  # the shard ended early: counted as damaged
                        got = (position, None, None, plan.index.shards[
                            plan.locate(position)[0]].url, "the shard ended before this clip")
                    records[got[0]] = got
                items.append(self._request(records.pop(position)))
            yield self.collator(self.transform.batch(items, epoch))

    def _members(self, plan: EpochPlan, start: int, stop: int, wanted: set[int]
                 ) -> Iterator[tuple[int, bytes | memoryview | None, dict | None, str, str]]:
        """``(position, audio bytes, metadata, where, error)`` of every wanted position in
        ``[start, stop)``, in shard order (positions a damaged shard lost: no bytes)."""
        slot = int(np.searchsorted(plan.shard_starts, start, side="right")) - 1
        while slot < len(plan.shard_order) and plan.shard_starts[slot] < stop:
            number = int(plan.shard_order[slot])
            base = int(plan.shard_starts[slot])
            shard = plan.index.shards[number]
            seen: set[int] = set()
            problem: dict[str, str] = {}
            for local, audio, meta, where, error in _read_shard(shard.url, problem):
                position = base + local
                seen.add(local)
                if position in wanted:
                    yield position, audio, meta, where, error
            for local in range(shard.clips):  # clips the tar did not give
                if local not in seen and base + local in wanted:
                    yield (base + local, None, None, f"{shard.url}#position {local}",
                           problem.get("error", "the clip's members are missing from the "
                                       "shard"))
            slot += 1

    def _request(self, record: tuple[Any, ...]) -> ClipRequest | BadClip:
        position, audio, meta, where, error = record
        if audio is None or meta is None:
            ident = str(meta.get("id", "")) if isinstance(meta, dict) else ""
            return BadClip(index=position, id=ident or scrub_url(where), path=scrub_url(where),
                           error=scrub_url(error), reason="tar_member")
        try:
            entry = _entry(meta, where)
        except DataError as err:
            return BadClip(index=position, id=str(meta.get("id", scrub_url(where))),
                           path=scrub_url(where), error=scrub_url(str(err)), reason="tar_member")
        return ClipRequest(entry, index=position, data=audio, where=where)


def _entry(meta: dict[str, Any], where: str) -> ManifestEntry:
    row = dict(meta)
    row["audio"] = where
    row.pop("audio_member", None)
    return _check_row(row, where, 1, "")


def _read_shard(url: str, problem: dict[str, str]
                ) -> Iterator[tuple[int, bytes | memoryview | None, dict | None, str, str]]:
    """The records of one tar shard: ``(position, audio, metadata, where, error)``.

    Members come from :func:`~alp_data.shards.tar.iter_members` (a local shard's audio as a
    view of the mapped file). A record missing a member, with invalid JSON, or cut short by a
    damaged tar is yielded
    with ``audio`` or ``metadata`` None and the reason; positions never reached are left to
    the caller, which reports them with ``problem["error"]`` (set here when the shard is
    missing or damaged).
    """
    current: dict[str, Any] = {}

    def finish() -> tuple[int, bytes | memoryview | None, dict | None, str, str] | None:
        if not current:
            return None
        where = f"{url}#{current['key']}.{current.get('ext', 'audio')}"
        audio, raw = current.get("audio"), current.get("json")
        meta, error = None, ""
        if raw is None:
            error = "the clip's .json member is missing"
        else:
            try:
                meta = json.loads(bytes(raw).decode("utf-8"))
                if not isinstance(meta, dict):
                    raise ValueError("not a JSON object")
            except (UnicodeDecodeError, ValueError) as err:
                meta, error = None, f"the clip's .json member is invalid ({err})"
        if audio is None and not error:
            error = "the clip's audio member is missing"
        return current["position"], audio, meta, where, error

    member_cut = False  # True when a member's own data were cut; else a header failed
    try:
        for name, data in iter_members(url):
            try:
                key, position, ext = member_position(name.rsplit("/", 1)[-1])
            except ValueError:
                continue  # not an ALP record (e.g. a README in the tar)
            if current and current["key"] != key:
                done = finish()
                if done is not None:
                    yield done
                current = {}
            current.setdefault("key", key)
            current.setdefault("position", position)
            if isinstance(data, Exception):  # this member's data are cut short
                member_cut = True
                raise data
            if ext == "json":
                current["json"] = data
            else:
                current["audio"], current["ext"] = data, ext
    except FileNotFoundError:
        problem["error"] = f"shard not found: {url}"
        return  # every position is reported missing by the caller
    except ImportError as err:  # fsspec names the package its protocol needs
        problem["error"] = f"shard {url}: its fsspec backend is not installed ({err})"
        return
    except (tarfile.TarError, OSError, EOFError, ValueError) as err:
        problem["error"] = f"damaged tar shard {url} ({type(err).__name__}: {err})"
        if current and not member_cut:
            # the next member's header failed: the record read so far is as complete as it
            # is (a whole clip stays good; one missing a member is reported so by finish)
            done = finish()
            if done is not None:
                yield done
        elif current:
            current.pop("audio", None)
            done = finish()
            if done is not None:
                position, _, meta, where, _ = done
                yield position, None, meta, where, f"damaged tar member ({err})"
        return
    done = finish()
    if done is not None:
        yield done


class ShardLoader:
    """A DataLoader over a :class:`ShardStream` that knows its position in the epoch.

    ``len()`` is the rank's batch count this epoch; :meth:`state_dict` is ``{epoch,
    batches_consumed, ...}`` and :meth:`load_state_dict` resumes exactly there.
    """

    #: no sampler: the stream plans its own batches (``set_loader_epoch`` looks for one)
    batch_sampler = None
    sampler = None

    def __init__(self, stream: ShardStream, loader: DataLoader) -> None:
        self.dataset = stream
        self.loader = loader
        self.consumed = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.dataset.epoch:
            self.consumed = 0  # a state_dict taken now is at the new epoch's start
        self.dataset.set_epoch(epoch)

    def skip(self, count: int) -> None:
        self.dataset.skip(count)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        state = self.dataset._state
        epoch = self.dataset.epoch
        self.consumed = int(state[2]) if int(state[1]) == epoch else 0
        try:
            for batch in self.loader:
                self.consumed += 1
                yield batch
        finally:
            # the skip is for one pass: another pass over this epoch starts at its beginning
            # (cleared only now: the workers read it when they start, at their own pace)
            if int(state[1]) == epoch:
                state[1] = -1

    def _split(self) -> dict[str, Any]:
        """What the epoch's batches depend on besides the epoch."""
        stream, cfg = self.dataset, self.dataset.plan_config
        return {"world_size": stream.world_size, "num_workers": stream.num_workers,
                "clips": stream.index.clips, "seed": cfg.seed, "batch_size": cfg.batch_size,
                "max_batch_seconds": cfg.max_batch_seconds, "shuffle": cfg.shuffle,
                "shuffle_buffer": cfg.shuffle_buffer, "drop_last": cfg.drop_last,
                "min_seconds": cfg.min_seconds,
                "max_seconds": None if math.isinf(cfg.max_seconds) else cfg.max_seconds}

    def state_dict(self) -> dict[str, Any]:
        stream = self.dataset
        return {"epoch": stream.epoch, "batches_consumed": self.consumed, "rank": stream.rank,
                **self._split()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        stream = self.dataset
        # keys a state from an older version lacks are not compared
        differ = {k: (state[k], v) for k, v in self._split().items()
                  if k in state and state[k] != v}
        if differ:
            raise DataError("cannot resume the shard stream exactly: "
                            + ", ".join(f"{k} was {a}, is {b}" for k, (a, b) in differ.items())
                            + " (the epoch's split depends on them)")
        stream.set_epoch(int(state["epoch"]))
        stream.skip(int(state["batches_consumed"]))


def build_stream_loader(index: ShardIndex, transform: ClipTransform, collator: Collator, *,
                        plan: PlanConfig, rank: int = 0, world_size: int = 1,
                        num_workers: int = 0, pin_memory: bool = False,
                        prefetch_factor: int | None = None) -> ShardLoader:
    """A :class:`ShardLoader` reading ``index`` for rank ``rank`` of ``world_size``."""
    stream = ShardStream(index, transform, collator, plan, rank=rank, world_size=world_size,
                         num_workers=num_workers)
    # worker seeds from a generator of the loader's own: iterating never moves the global
    # torch random stream (dropout reads it), so a resumed run draws what an unbroken one does
    kwargs: dict[str, Any] = {"batch_size": None, "num_workers": num_workers,
                              "collate_fn": _identity, "pin_memory": pin_memory,
                              "persistent_workers": num_workers > 0,
                              "generator": torch.Generator().manual_seed(plan.seed)}
    if num_workers > 0 and prefetch_factor is not None:
        kwargs["prefetch_factor"] = prefetch_factor
    return ShardLoader(stream, DataLoader(stream, **kwargs))
