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
    assert 0 <= result["abs_diff_p999"] <= result["max_abs_diff"]
    low, high = result["log_mel_range"]
    assert low <= result["log_mel_at_max_diff"] <= high and low < high
    assert 0 <= result["frac_abs_diff_over_1e-3"] < 1
    (row,) = result["rows"]
    assert row["workers"] == 1
    for key in ("features_in_workers_clips_per_s", "features_on_device_clips_per_s",
                "ceiling_clips_per_s", "decode_ceiling_clips_per_s"):
        assert row[key] > 0, key
    assert row["decode_ceiling_clips_per_s"] > row["ceiling_clips_per_s"]


@pytest.mark.slow
def test_gpu_train_step_script_runs_on_the_cpu(tmp_path):
    out, profile = tmp_path / "steps.json", tmp_path / "profile.txt"
    from alp_models.text.tokenizer import minilm_model_dir

    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_train_step.py"), "--device", "cpu",
         "--tokenizer", str(minilm_model_dir()), "--cases", "default:4:fp32,default:2:bf16:compile",
         "--frames", "120", "--steps", "2", "--profile", str(profile), "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    good, compiled = json.loads(out.read_text())
    assert (good["case"], good["batch"], good["frames"], good["device"]) == (
        "default", 4, 120, "cpu")
    assert good["step_ms"] > 0 and good["tflops_per_step"] > 0 and good["mfu"] is None
    assert good["samples_per_s"] == pytest.approx(4 / (good["step_ms"] / 1000), rel=0.01)
    # the compiled step: encoders captured whole (one graph each, no break), a finite loss
    assert compiled["compile"] == "default", compiled
    assert compiled["dynamo"] == {"graphs": 2, "graph_breaks": 0}
    assert 0 < compiled["last_loss"] < 10
    text = profile.read_text()
    assert '"case": "default"' in text and "aten::" in text


def test_gpu_train_step_rejects_a_malformed_case():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from gpu_train_step import parse_cases
    finally:
        sys.path.remove(str(BENCHMARKS))
    assert parse_cases("zipformer-base:240:bf16:compile,default:8:fp32,"
                       "transformer-large:4:bf16:compile=reduce-overhead") == [
        ("zipformer-base", 240, "bf16", "default"), ("default", 8, "fp32", None),
        ("transformer-large", 4, "bf16", "reduce-overhead")]
    assert [c[3] for c in parse_cases("compile")] == ["default"] * 4
    for bad in ("default:eight:fp32", "default:8:fp64", "default:8", "default:8:bf16:fast",
                "nosuch:8:fp32", "default:8:bf16:default", "default:8:bf16:compile=fast"):
        with pytest.raises(SystemExit, match="MODEL:BATCH:PRECISION"):
            parse_cases(bad)
