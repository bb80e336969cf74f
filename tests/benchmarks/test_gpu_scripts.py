"""The GPU benchmark scripts run on the CPU too (``--device cpu``): a smoke run here keeps
them working for the sessions that are lent a GPU, whose device time is too short to spend
on a script that no longer matches the code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"


@pytest.mark.slow
def test_gpu_loader_script_runs_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_loader.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_loader.py"), "--device", "cpu", "--workers", "1",
         "--clips", "40", "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["clips"] == 40
    assert 0 < result["max_abs_diff"] < 1e-3  # the one-pass path: rounding only
    (row,) = result["rows"]
    assert row["workers"] == 1
    for key in ("features_in_workers_clips_per_s", "features_on_device_clips_per_s",
                "ceiling_clips_per_s", "decode_ceiling_clips_per_s"):
        assert row[key] > 0, key
    assert row["decode_ceiling_clips_per_s"] > row["ceiling_clips_per_s"]
