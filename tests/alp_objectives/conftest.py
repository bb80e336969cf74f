"""Helpers for the multi-process objective tests."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import torch.multiprocessing as mp


def _spawn_ranks(worker: Callable[[int, int, dict], None], world: int) -> dict:
    """Run ``worker(rank, port, out)`` in ``world`` spawned processes; return what they put in out.

    The worker opens the gloo group on 127.0.0.1:``port`` itself.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.spawn(worker, args=(port, out), nprocs=world, join=True)
    return dict(out)


@pytest.fixture(scope="session")
def spawn_ranks() -> Callable[[Callable[[int, int, dict], None], int], dict]:
    """The :func:`_spawn_ranks` helper, for module-scoped fixtures of the distributed tests."""
    return _spawn_ranks
