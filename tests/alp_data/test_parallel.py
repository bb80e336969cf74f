"""map_tasks: the local backend and the Dask backend (real processes), results in task order.

The task functions live in ``_parallel_tasks`` beside this file (see its docstring for why:
functions of this module, imported by pytest's importlib mode, do not unpickle in spawned
processes). Tests marked ``distributed`` start a Dask ``LocalCluster``: one for the module,
reached by its scheduler address, plus one started by ``map_tasks`` itself (no address).
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alp_core.errors import ConfigError, DataError
from alp_data import parallel
from alp_data.parallel import map_tasks

# six tasks, each sleeping less than the one before: with two workers they end out of order
OUT_OF_ORDER = [(i, 0.06 * (5 - i)) for i in range(6)]
EXPECTED = [(i, i * i) for i in range(6)]


@pytest.fixture(scope="module")
def tasks():
    """The ``_parallel_tasks`` module, its folder on ``sys.path`` (inherited by spawned workers)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(Path(__file__).resolve().parent))
        mp.delitem(sys.modules, "_parallel_tasks", raising=False)
        yield importlib.import_module("_parallel_tasks")


@pytest.fixture(scope="module")
def cluster(tasks):
    """One Dask LocalCluster (2 single-threaded worker processes) shared by the module's tests."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(**parallel._local_cluster_options(2)) as local_cluster:
        yield local_cluster


def _values(results):
    """``(i, i*i)`` of each result, dropping the process id and end time."""
    return [(index, square) for index, square, _pid, _end in results]


def _new_threads(before: set[threading.Thread], wait: float = 5.0) -> list[str]:
    """Threads started since ``before`` still alive after up to ``wait`` s (a worker's watch
    thread ends just after its process), less distributed's process-wide offload executor."""
    deadline = time.monotonic() + wait
    while True:
        new = [t.name for t in set(threading.enumerate()) - before
               if not t.name.startswith("Dask-Offload")]
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- local backend -----------------------------------------------------------------------


def test_local_one_and_two_workers_give_the_same_ordered_results(tasks):
    serial = map_tasks(tasks.square_late, OUT_OF_ORDER, workers=1)
    pooled = map_tasks(tasks.square_late, OUT_OF_ORDER, workers=2)
    assert _values(serial) == _values(pooled) == EXPECTED
    assert {pid for _, _, pid, _ in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, _, pid, _ in pooled}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_task_error_keeps_its_type_and_names_the_task(tasks, workers):
    with pytest.raises(DataError) as info:
        map_tasks(tasks.bad_shard, range(6), workers=workers)
    assert str(info.value) == "shard-00003.tar: member 7 is not a WAV file"  # type, message kept
    assert any("task 3 of 6 failed" in note for note in info.value.__notes__)


def test_empty_task_list_gives_an_empty_list(tasks):
    assert map_tasks(tasks.bad_shard, [], workers=2) == []
    assert map_tasks(tasks.bad_shard, [], workers=2, backend="dask") == []  # starts no cluster


# --- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -2, 2.0, "2", None])
def test_bad_workers(workers):
    with pytest.raises(ConfigError, match=r"workers must be an integer >= 1"):
        map_tasks(abs, [1], workers=workers)


def test_bad_backend_lists_the_accepted_ones():
    with pytest.raises(ConfigError, match=r"backend 'ray' is not known; accepted: local, dask"):
        map_tasks(abs, [1], backend="ray")


def test_address_needs_the_dask_backend():
    with pytest.raises(ConfigError, match=r"needs backend='dask'"):
        map_tasks(abs, [1], address="tcp://127.0.0.1:8786")


def test_missing_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` fails
    with pytest.raises(ConfigError, match=r"pip install 'alp-data\[dask\]'"):
        map_tasks(abs, [1], backend="dask")


def test_importing_the_module_does_not_import_dask():
    code = (
        "import sys, alp_data.parallel; "
        "print(sorted({'dask', 'distributed'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(("address", "shown"), [
    ("tcp://alice:s3cret@10.0.0.5:8786", "tcp://***@10.0.0.5:8786"),
    ("tls://token@scheduler.internal:8786", "tls://***@scheduler.internal:8786"),
    ("alice:s3cret@10.0.0.5:8786", "***@10.0.0.5:8786"),
    ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ("invalid address 'bob:pw@h:1'; maybe", "invalid address '***@h:1'; maybe"),
])
def test_scrub_address(address, shown):
    assert parallel._scrub_address(address) == shown


# --- dask backend ------------------------------------------------------------------------


def test_dask_unreachable_scheduler_names_the_address_quickly(monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(parallel, "DASK_CONNECT_TIMEOUT_S", 1.0)
    address = f"tcp://127.0.0.1:{_closed_port()}"
    threads, start = set(threading.enumerate()), time.monotonic()
    with pytest.raises(ConfigError, match=rf"cannot reach the Dask scheduler at {address} "):
        map_tasks(abs, [1], backend="dask", address=address)
    assert time.monotonic() - start < 5
    assert _new_threads(threads) == []  # the failed client's IO-loop thread is stopped


def test_dask_address_with_credentials_is_scrubbed():
    pytest.importorskip("distributed")
    address = f"tcp://alice:s3cret@127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError, match=r"is not a Dask scheduler address") as info:
        map_tasks(abs, [1], backend="dask", address=address)  # distributed takes no user:pw@
    message = str(info.value)
    assert "tcp://***@127.0.0.1:" in message
    assert "s3cret" not in message and "alice" not in message
    assert info.value.__cause__ is None  # the cause would repeat the address unscrubbed


@pytest.mark.distributed
def test_dask_local_cluster_orders_results_and_uses_several_processes(tasks):
    pytest.importorskip("distributed")
    threads = set(threading.enumerate())
    results = map_tasks(tasks.square_late, OUT_OF_ORDER, workers=2, backend="dask")
    assert _new_threads(threads) == []  # the cluster, its client and their IO loops are closed
    assert _values(results) == EXPECTED  # what the local backend gives (tests above)
    pids = {pid for _, _, pid, _ in results}
    assert len(pids) == 2 and os.getpid() not in pids
    ends = [end for *_, end in results]
    assert ends != sorted(ends)  # the tasks did finish out of order


@pytest.mark.distributed
def test_dask_cluster_by_address_orders_results(tasks, cluster):
    results = map_tasks(tasks.square_late, OUT_OF_ORDER, backend="dask",
                        address=cluster.scheduler_address)
    assert _values(results) == EXPECTED
    assert os.getpid() not in {pid for _, _, pid, _ in results}


@pytest.mark.distributed
def test_dask_task_error_keeps_its_type_and_names_the_task(tasks, cluster):
    with pytest.raises(DataError) as info:
        map_tasks(tasks.bad_shard, range(6), backend="dask", address=cluster.scheduler_address)
    assert str(info.value) == "shard-00003.tar: member 7 is not a WAV file"  # type, message kept
    assert any("task 3 of 6 failed" in note for note in info.value.__notes__)
    # the cluster is still usable after the failure
    assert map_tasks(tasks.bad_shard, [0, 1, 2], backend="dask",
                     address=cluster.scheduler_address) == [0, 1, 2]


@pytest.mark.distributed
def test_dask_sliding_window_keeps_the_order(tasks, cluster, monkeypatch):
    # two tasks in flight at a time: ten tasks go out in several submissions
    monkeypatch.setattr(parallel, "_DASK_WINDOW_MIN", 1)
    monkeypatch.setattr(parallel, "_DASK_WINDOW_PER_THREAD", 1)
    many = [(i, 0.01 * (i % 3)) for i in range(10)]
    results = map_tasks(tasks.square_late, many, backend="dask",
                        address=cluster.scheduler_address)
    assert _values(results) == [(i, i * i) for i in range(10)]
