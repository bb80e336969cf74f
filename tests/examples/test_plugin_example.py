"""The example third-party plugin, installed for real, used by a tiny ``alp run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "alp-plugin-example"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example into its own folder; PYTHONPATH makes it visible to subprocesses."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(site), str(EXAMPLE)],
        check=True, capture_output=True, text=True)
    env = dict(os.environ, PYTHONPATH=str(site), TOKENIZERS_PARALLELISM="false")
    env.pop("ALP_DISABLE_EXTERNAL_PLUGINS", None)
    return env


def alp(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alp_cli.main", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_example_components_are_listed_with_their_distribution(installed_example):
    out = alp(installed_example, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(c["kind"], c["name"]): c for c in json.loads(out.stdout)["components"]}
    for key in [("audio_encoder", "conv1d"), ("objective", "margin-ranking"),
                ("eval_task", "knn-probe")]:
        assert rows[key]["distribution"] == "alp-plugin-example"
        assert rows[key]["version"] == "0.1.0"


@pytest.mark.slow
def test_disable_switch_hides_the_example(installed_example):
    env = dict(installed_example, ALP_DISABLE_EXTERNAL_PLUGINS="1")
    out = alp(env, "plugins", "--json")
    names = {c["name"] for c in json.loads(out.stdout)["components"]}
    assert "conv1d" not in names and "transformer" in names
    run = alp(env, "run", "examples/alp-plugin-example/run.yaml", "--check")
    assert run.returncode == 2 and "conv1d" in run.stderr and "transformer" in run.stderr


@pytest.mark.slow
def test_tiny_run_uses_encoder_objective_and_eval_task(installed_example, tmp_path):
    out = alp(installed_example, "run", "examples/alp-plugin-example/run.yaml",
              f"output_dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    tasks = report["results"]["pretrained"]
    assert any(t.startswith("knn/") for t in tasks) and "retrieval" in tasks
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "conv1d" in config and "margin-ranking" in config
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert any(e["event"] == "train" for e in events)
