"""Run independent data-preparation tasks in parallel: local processes, or a Dask cluster.

Shard writing, content hashing for ``alp data mix`` and header probing are lists of
independent tasks (one per shard, one per chunk of clips). :func:`map_tasks` runs them and
returns the results in the order of the tasks, whatever order they finish in, so the output
is the same for any number of workers and any backend.

Backends:

- ``local`` (default): the calling process (``workers <= 1``) or a pool of ``workers``
  processes started with ``spawn`` (safe beside threads; ``fn`` and the tasks must pickle).
- ``dask``: a ``dask.distributed`` cluster (the ``alp-data[dask]`` extra), given by the
  scheduler ``address`` or, without one, a local cluster of ``workers`` processes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from alp_core.errors import ConfigError

__all__ = ["BACKENDS", "map_tasks"]

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("local", "dask")


def map_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
) -> list[R]:
    """``[fn(t) for t in tasks]`` computed in parallel; results in task order."""
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not known; accepted: {', '.join(BACKENDS)}")
    tasks = list(tasks)
    if backend == "dask":
        return _dask_map(fn, tasks, workers=workers, address=address)
    if address is not None:
        raise ConfigError("address names a cluster scheduler; it needs backend='dask'")
    if workers == 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        return list(pool.map(fn, tasks))


def _dask_map(fn: Callable[[Any], Any], tasks: list[Any], *, workers: int,
              address: str | None) -> list[Any]:
    raise ConfigError("backend 'dask' is not built yet")
