"""Shared fixtures: deterministic seeds, a fresh plugin manager per test, no external plugins."""

from __future__ import annotations

import os
import random
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a model hub


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # alp-core/alp-objectives alone need no numpy
        pass
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
    yield


@pytest.fixture(autouse=True)
def _fresh_plugin_manager():
    """Every test sees a newly built plugin manager (never one cached by an earlier test)."""
    from alp_core import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()


def write_distribution(root: Path, dist: str, module: str, source: str,
                       entry_name: str | None = None, version: str = "1.0") -> None:
    """Install a distribution ``dist`` (real dist-info metadata) under ``root``.

    Its ``alp`` entry point loads the module ``module`` whose code is ``source``.
    """
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[alp]\n{entry_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where a test installs fake plugin distributions.

    Yields ``install(dist, module, source)``.
    """
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    before = set(sys.modules)
    yield lambda *a, **k: write_distribution(root, *a, **k)
    for name in set(sys.modules) - before:
        if name.startswith("fake_"):
            del sys.modules[name]


def _in_gloo_group(rank: int, port: int, world: int, worker, out) -> None:
    """One spawned rank: join the gloo group on 127.0.0.1:``port``, run the worker, leave."""
    import datetime

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    # a rank left waiting in a mismatched collective fails in 30 s instead of hanging
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=30))
    try:
        worker(rank, port, out)
    finally:
        dist.destroy_process_group()


def _spawn_ranks(worker, world: int) -> dict:
    """Run ``worker(rank, port, out)`` in ``world`` spawned processes, each already in one
    gloo group (on 127.0.0.1:``port``); return what they put in ``out``."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.spawn(_in_gloo_group, args=(port, world, worker, out), nprocs=world, join=True)
    return dict(out)


@pytest.fixture(scope="session")
def spawn_ranks():
    """The :func:`_spawn_ranks` helper, for module-scoped fixtures of the multi-process tests."""
    return _spawn_ranks
