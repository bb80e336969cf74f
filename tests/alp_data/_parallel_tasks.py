"""Task functions for tests/alp_data/test_parallel.py, in a module the worker processes import.

``map_tasks`` sends ``fn`` to spawned processes (local pool) or Dask workers by reference
(module and name). The test module itself is imported by pytest's ``importlib`` mode under
a name no other process can import, so its functions would not unpickle there; this module
is imported as top-level ``_parallel_tasks`` with its folder put on ``sys.path`` by the test
module before any process starts: ``spawn`` children (the local pool, and the LocalCluster's
nanny-started workers) begin with the parent's ``sys.path``, so they import it too.
"""

from __future__ import annotations

import os
import time

from alp_core.errors import DataError


def square_late(task: tuple[int, float]) -> tuple[int, int, int, float]:
    """``(i, i*i, pid, end)`` after sleeping ``delay`` s: large delays make early tasks end last.

    ``pid`` is the process that ran the task, ``end`` the wall-clock time it ended.
    """
    index, delay = task
    time.sleep(delay)
    return index, index * index, os.getpid(), time.time()


def bad_shard(index: int) -> int:
    """Raise :class:`DataError` for task 3 (a malformed shard), return ``index`` otherwise."""
    if index == 3:
        raise DataError(f"shard-{index:05d}.tar: member 7 is not a WAV file")
    return index
