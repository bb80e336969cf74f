"""Run independent data-preparation tasks in parallel: local processes, or a Dask cluster.

Shard writing, content hashing for ``alp data mix`` and header probing are lists of
independent tasks (one per shard, one per chunk of clips). :func:`map_tasks` runs them and
returns the results in the order of the tasks, whatever order they finish in, so the output
is the same for any number of workers and any backend. A task that raises stops the run:
its exception comes back with its own type and message, with a note naming the task index.

Backends:

- ``local`` (default): the calling process (``workers <= 1``) or a pool of ``workers``
  processes started with ``spawn`` (safe beside threads; ``fn`` and the tasks must pickle).
- ``dask``: a ``dask.distributed`` cluster (the ``alp-data[dask]`` extra), given by the
  scheduler ``address`` (``workers`` is then the cluster's business) or, without one, a
  ``LocalCluster`` of ``workers`` single-threaded processes started and closed inside the
  call. Dask sends ``fn`` with cloudpickle: a module-level function goes by name, so its
  module must be importable on the workers (an installed package). At most a few tasks per
  worker thread are in flight at a time, so a long task list is never one huge graph.

Why Dask, not Ray: Dask is a pure-Python ``pip install`` from the same ecosystem as fsspec
(fsspec came out of the Dask project, same authors; Dask reads the same ``s3://``/``gs://``
URLs the manifests already use). It runs on SLURM/PBS/SGE through dask-jobqueue, on
Kubernetes through dask-kubernetes and on YARN through dask-yarn, and a ``LocalCluster`` runs
the same code on a laptop. Ray's wheel is large and brings its own object store and daemon
(raylet), which is more than lists of independent file tasks need.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import operator
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

from alp_core.errors import ConfigError

__all__ = ["BACKENDS", "DASK_CONNECT_TIMEOUT_S", "map_tasks"]

T = TypeVar("T")
R = TypeVar("R")

BACKENDS = ("local", "dask")

#: Seconds to wait for a Dask scheduler given by ``address`` before giving up.
DASK_CONNECT_TIMEOUT_S = 10.0

# tasks in flight on a Dask cluster: this many per worker thread, at least _DASK_WINDOW_MIN
_DASK_WINDOW_PER_THREAD = 4
_DASK_WINDOW_MIN = 64

# the user[:password] before "@" in a URL or bare address, also when quoted inside a message
_CREDENTIALS = re.compile(r"[^\s/@'\"()<>\[\],;]+@")


def map_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int = 1,
    backend: str = "local",
    address: str | None = None,
) -> list[R]:
    """``[fn(t) for t in tasks]`` computed in parallel; results in task order.

    A task's exception is raised again unchanged (type, message, traceback) with a note
    ``task i of n failed`` (:pep:`678`); the tasks not yet started are cancelled.
    """
    try:
        workers = operator.index(workers)  # int, numpy int; not 2.0, "2" (True is 1)
    except TypeError:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}") from None
    if workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not known; accepted: {', '.join(BACKENDS)}")
    tasks = list(tasks)
    if backend == "dask":
        return _dask_map(fn, tasks, workers=workers, address=address)
    if address is not None:
        raise ConfigError("address names a cluster scheduler; it needs backend='dask'")
    if workers == 1 or len(tasks) <= 1:
        results = []
        for i, task in enumerate(tasks):
            with _naming_task(i, len(tasks), "in this process"):
                results.append(fn(task))
        return results
    processes = min(workers, len(tasks))
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=context)
    try:
        futures: list[Future[R]] = [pool.submit(fn, t) for t in tasks]
        results = []
        for i, future in enumerate(futures):
            with _naming_task(i, len(tasks), f"in a pool of {processes} processes"):
                results.append(future.result())
        return results
    finally:  # after a failure, the tasks not yet started are dropped, not run
        pool.shutdown(wait=True, cancel_futures=True)


def _scrub_address(address: str) -> str:
    """``address`` with any ``user:password@`` replaced by ``***@`` (for messages and logs)."""
    return _CREDENTIALS.sub("***@", address)


@contextlib.contextmanager
def _naming_task(index: int, total: int, where: str) -> Iterator[None]:
    """Add a note naming the failed task to the exception raised inside the block."""
    try:
        yield
    except BaseException as exc:
        if not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            _add_note(exc, f"map_tasks: task {index} of {total} failed, run {where}")
        raise


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)
    else:  # pragma: no cover - Python 3.10: the attribute PEP 678 defines, not printed
        notes = getattr(exc, "__notes__", None)
        if not isinstance(notes, list):
            notes = []
            with contextlib.suppress(AttributeError, TypeError):
                exc.__notes__ = notes  # type: ignore[attr-defined]
        notes.append(note)


def _dask_map(fn: Callable[[Any], Any], tasks: list[Any], *, workers: int,
              address: str | None) -> list[Any]:
    """Run the tasks on a Dask cluster: the scheduler at ``address``, or a LocalCluster."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise ConfigError(
            "backend 'dask' needs dask.distributed, which is not installed: "
            "pip install 'alp-data[dask]'"
        ) from exc
    if address is not None and not str(address).strip():
        raise ConfigError("address is empty; give a scheduler address such as tcp://host:8786")
    if not tasks:
        return []

    with contextlib.ExitStack() as stack:
        if address is None:
            where = f"on a dask LocalCluster of {workers} workers"
            cluster = stack.enter_context(LocalCluster(**_local_cluster_options(workers)))
            client = stack.enter_context(Client(cluster, set_as_default=False))
        else:
            shown = _scrub_address(str(address))
            where = f"on the dask cluster at {shown}"
            try:
                client = _tidy_client(Client)(
                    address, timeout=DASK_CONNECT_TIMEOUT_S, set_as_default=False
                )
            except Exception as exc:  # OSError, TimeoutError, ValueError for a bad address
                reason = _scrub_address(str(exc)) or type(exc).__name__
                if isinstance(exc, ValueError):  # unknown scheme, unparsable host:port
                    problem = f"{shown} is not a Dask scheduler address"
                else:
                    problem = (f"cannot reach the Dask scheduler at {shown} within "
                               f"{DASK_CONNECT_TIMEOUT_S:g} s")
                # from None: the cause would repeat the address with its credentials
                raise ConfigError(f"{problem}: {reason}") from None
            stack.enter_context(client)
        return _gather_in_order(client, as_completed, fn, tasks, where)
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _local_cluster_options(workers: int) -> dict[str, Any]:
    """``LocalCluster`` keywords: ``workers`` single-threaded processes, quiet, no dashboard."""
    return dict(
        # processes, one thread each: the tasks are Python code that holds the GIL
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        # no dashboard; the scheduler still serves HTTP (health, metrics) and would take
        # port 8787, warning when another cluster has it: a free port on loopback instead
        dashboard_address="127.0.0.1:0", scheduler_kwargs={"dashboard": False},
        # every failure reaches the caller as an exception: the workers' own
        # "Compute Failed" log lines would only repeat it
        silence_logs=logging.CRITICAL,
    )


def _tidy_client(client_class: Any) -> Any:
    """``distributed.Client`` that, failing to connect, stops the IO-loop thread it started.

    A ``Client`` whose scheduler cannot be reached raises from its constructor but leaves its
    event-loop thread running (and a half-open client whose ``__del__`` closes it later): one
    stray thread per failed call. This subclass closes the client and stops the loop first.
    """

    class TidyClient(client_class):
        def start(self, **kwargs: Any) -> None:
            try:
                super().start(**kwargs)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.close(timeout=DASK_CONNECT_TIMEOUT_S)  # no-op once closed
                runner: Any = getattr(self, "_loop_runner", None)  # close() skips it if closed
                if runner is not None:
                    with contextlib.suppress(Exception):
                        runner.stop()
                raise

    return TidyClient


def _gather_in_order(client: Any, as_completed: Any, fn: Callable[[Any], Any],
                     tasks: list[Any], where: str) -> list[Any]:
    """Run one Dask task per item, collect results as they finish, return them in task order.

    Tasks are submitted in a sliding window (a few per worker thread), not all at once: the
    arguments of tens of thousands of shard tasks would make one graph of gigabytes, and the
    results of finished tasks would pile up on the workers.
    """
    total = len(tasks)
    name = getattr(fn, "__name__", None) or type(fn).__name__
    run = uuid.uuid4().hex[:12]
    threads = sum(client.nthreads().values())
    window = max(_DASK_WINDOW_MIN, _DASK_WINDOW_PER_THREAD * threads)
    results: list[Any] = [None] * total
    index: dict[Any, int] = {}  # key of a future in flight -> its task index
    live: set[Any] = set()  # futures in flight
    submitted = 0
    finished = as_completed(loop=client.loop)

    def submit(count: int) -> None:
        nonlocal submitted
        stop = min(total, submitted + count)
        if stop <= submitted:
            return
        keys = [f"alp-map-{name}-{run}-{i}" for i in range(submitted, stop)]
        # pure=False: no hashing of every task to build keys; retries=0: a failure is final
        futures = client.map(fn, tasks[submitted:stop], key=keys, pure=False, retries=0)
        index.update((future.key, i) for i, future in enumerate(futures, start=submitted))
        live.update(futures)
        finished.update(futures)
        submitted = stop

    try:
        submit(window)
        for batch in finished.batches():
            for future in batch:
                if future.status != "finished":  # error, or cancelled (e.g. worker lost)
                    with _naming_task(index[future.key], total, where):
                        future.result()
            for future, value in zip(batch, client.gather(batch)):
                results[index.pop(future.key)] = value
                live.discard(future)
                future.release()  # frees the result on the worker at once
            submit(window - len(live))
    except BaseException:
        client.cancel(list(live))
        raise
    return results
