"""Helpers for the training tests: `alp run` in a real subprocess on the smoke config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
SMOKE = str(REPO / "configs" / "smoke.yaml")
# No dropout anywhere, so runs with different process counts see the same function.
NO_DROPOUT = ["model.audio_encoder.dropout=0", "model.text_encoder.dropout=0"]
FAST = ["eval.baseline=false", "eval.tasks=[]", "train.log_every=1", "train.progress=false"]


def alp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "alp_cli.main", "run", *args]


def alp_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    return env


def run_alp_process(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``alp run ARGS`` in a fresh process; output captured."""
    return subprocess.run(alp_command(*args), env=alp_env(), capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def train_losses(run_dir: Path) -> dict[int, float]:
    """Loss per optimizer step; a step logged twice (before a kill, after resume) keeps the
    last record."""
    out: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "train":
            out[rec["step"]] = rec["loss"]
    return out


def start_alp(log: Path, *args: str) -> subprocess.Popen:
    """``alp run ARGS`` in the background, stdout+stderr into ``log``."""
    with log.open("w") as fh:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(alp_command(*args), env=alp_env(), stdout=fh,
                                stderr=subprocess.STDOUT, text=True, cwd=REPO,
                                start_new_session=True)  # a group the test can kill whole


def wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, limit: float = 120) -> None:
    """Block until ``metrics.jsonl`` logs ``step`` (or fail if the process ends first)."""
    deadline = time.monotonic() + limit
    path = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline:
        if path.is_file() and max(train_losses(run_dir), default=0) >= step:
            return
        if proc.poll() is not None:
            raise AssertionError(f"alp run ended (code {proc.returncode}) before step {step}")
        time.sleep(0.05)
    raise AssertionError(f"step {step} not reached in {limit} s")


@pytest.fixture(scope="session")
def corpus_cache(tmp_path_factory) -> str:
    """One demo-corpus cache for every training test (the smoke corpus, written once)."""
    return str(tmp_path_factory.mktemp("alp-cache"))


@pytest.fixture(scope="session")
def alp() -> types.SimpleNamespace:
    """The helpers above, for test modules (conftest functions are not importable)."""
    return types.SimpleNamespace(
        SMOKE=SMOKE, NO_DROPOUT=NO_DROPOUT, FAST=FAST, run=run_alp_process, start=start_alp,
        losses=train_losses, wait_for_step=wait_for_step, env=alp_env, REPO=REPO)


@pytest.fixture
def site_dir(tmp_path, monkeypatch):
    """Install a fake plugin distribution that subprocesses see (through PYTHONPATH)."""
    import textwrap

    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.setenv("PYTHONPATH", f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")

    def install(dist: str, module: str, source: str) -> None:
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[alp]\n{module} = {module}\n")

    return install
