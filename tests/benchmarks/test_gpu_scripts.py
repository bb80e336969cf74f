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
         "--clips", "40", "--epochs", "1", "--ceiling-clips", "20", "--out", str(out), "--profile",
         str(tmp_path / "main.txt")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["clips"] == 40
    assert 0 <= result["max_abs_diff"] < 1e-3  # the one-pass path: rounding only (none on the CPU)
    assert 0 <= result["abs_diff_p999"] <= result["max_abs_diff"]
    low, high = result["log_mel_range"]
    assert low <= result["log_mel_at_max_diff"] <= high and low < high
    assert 0 <= result["frac_abs_diff_over_1e-3"] < 1
    (row,) = result["rows"]
    assert row["workers"] == 1
    for key in ("features_in_workers_clips_per_s", "features_in_workers_unpinned_clips_per_s",
                "features_on_device_clips_per_s",
                "features_on_device_unpinned_clips_per_s",
                "features_on_device_spec_augment_clips_per_s", "ceiling_clips_per_s",
                "decode_ceiling_clips_per_s"):
        assert row[key] > 0, key
    assert row["decode_ceiling_clips_per_s"] > row["ceiling_clips_per_s"]
    assert row["parallel_ceiling_clips_per_s"] > 0
    assert row["in_workers_vs_parallel_ceiling"] == pytest.approx(
        row["features_in_workers_clips_per_s"] / row["parallel_ceiling_clips_per_s"], abs=2e-3)
    assert 0 <= result["mel_bin_at_max_diff"] < 80
    profile = (tmp_path / "main.txt").read_text()
    assert profile.startswith("features on cpu, 1 workers: 40 clips")
    assert "cProfile" in profile and "batch_features" in profile and "aten::" in profile


@pytest.mark.slow
def test_gpu_train_step_script_runs_on_the_cpu(tmp_path):
    out, profile = tmp_path / "steps.json", tmp_path / "profile.txt"
    from alp_models.text.tokenizer import minilm_model_dir

    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_train_step.py"), "--device", "cpu",
         "--tokenizer", str(minilm_model_dir()), "--cases",
         "default:4:fp32,default:2:bf16:compile,default:2:bf16:compile-regional",
         "--frames", "120", "--steps", "2", "--profile", str(profile), "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    good, compiled, regional = json.loads(out.read_text())
    assert (good["case"], good["batch"], good["frames"], good["device"]) == (
        "default", 4, 120, "cpu")
    assert good["step_ms"] > 0 and good["tflops_per_step"] > 0 and good["mfu"] is None
    assert good["samples_per_s"] == pytest.approx(4 / (good["step_ms"] / 1000), rel=0.01)
    # the compiled step: encoders captured whole (one graph each, no break), a finite loss
    assert compiled["compile"] == "default", compiled
    assert compiled["dynamo"] == {"graphs": 2, "graph_breaks": 0}
    assert 0 < compiled["last_loss"] < 10
    # regional: one graph for the 3 audio layers, one for the 2 BERT layers, no break
    assert regional["compile"] == "regional", regional
    assert regional["dynamo"] == {"graphs": 2, "graph_breaks": 0}
    assert 0 < regional["last_loss"] < 10
    assert regional["first_compiled_step_s"] > 0
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
    assert parse_cases("transformer-large:8:bf16:compile-regional,"
                       "default:2:fp32:compile-regional=reduce-overhead") == [
        ("transformer-large", 8, "bf16", "regional"),
        ("default", 2, "fp32", "regional+reduce-overhead")]
    assert [c[3] for c in parse_cases("compile")] == ["default"] * 4
    for bad in ("default:eight:fp32", "default:8:fp64", "default:8", "default:8:bf16:fast",
                "nosuch:8:fp32", "default:8:bf16:default", "default:8:bf16:compile=fast",
                "default:8:bf16:regional"):
        with pytest.raises(SystemExit, match="MODEL:BATCH:PRECISION"):
            parse_cases(bad)


def test_channels_last_depthwise_experiment_computes_the_same_convolution():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from gpu_train_step import channels_last_depthwise, use_channels_last_depthwise
    finally:
        sys.path.remove(str(BENCHMARKS))
    import torch

    from alp_models.audio.zipformer import build_zipformer_encoder
    from alp_models.audio.zipformer.layers import ConvolutionModule
    from alp_models.configs import ZipformerConfig

    torch.manual_seed(0)
    module = ConvolutionModule(6, 5)
    x = torch.randn(2, 9, 6)
    w, bias = module.depthwise_conv.weight.detach(), module.depthwise_conv.bias.detach()
    ref = torch.zeros(2, 9, 6)  # out[b, t, c] = bias[c] + sum_k w[c, k] x[b, t + k - 2, c]
    for b in range(2):
        for t in range(9):
            for c in range(6):
                ref[b, t, c] = bias[c] + sum(
                    float(w[c, 0, k]) * float(x[b, t + k - 2, c])
                    for k in range(5) if 0 <= t + k - 2 < 9)
    with torch.no_grad():
        torch.testing.assert_close(module.depthwise(x), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(channels_last_depthwise(module, x), ref, atol=1e-5, rtol=1e-5)

    encoder = build_zipformer_encoder(ZipformerConfig(preset="tiny")).eval()
    features, lengths = torch.randn(2, 120, 80), torch.tensor([120, 90])
    with torch.no_grad():
        before, _ = encoder(features, lengths)
        use_channels_last_depthwise(encoder)
        after, _ = encoder(features, lengths)
    patched = [m for m in encoder.modules() if isinstance(m, ConvolutionModule)]
    assert patched and all("depthwise" in vars(m) for m in patched)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)


def test_fbank_precision_script_runs_on_the_cpu(tmp_path):
    """The table behind FbankConfig.precision, device rows included (on the CPU here)."""
    out = tmp_path / "precision.json"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fbank_precision.py"), "--clips", "4",
         "--device-rows", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"cpu float32", "cpu float32, scipy FFT", "kaldi.fbank float32",
                         "cpu float64", "device cpu float32", "device cpu float32, per clip",
                         "device cpu float64"}
    for name in ("cpu float64", "device cpu float64"):
        assert rows[name]["tones"]["max"] <= 2e-6 and rows[name]["loader"]["max"] <= 2e-6
        assert rows[name]["tones"]["bins_over_1e-3"] == []
    # float32: large in the tones' quiet bins, and another FFT rounds them otherwise
    assert rows["cpu float32"]["tones"]["max"] > 1e-2
    assert rows["cpu float32"]["tones"]["bins_over_1e-3"]
    assert rows["kaldi.fbank float32"]["tones"]["max_vs_cpu32"] < 1e-5
    assert rows["cpu float32, scipy FFT"]["tones"]["max_vs_cpu32"] > 1e-3
    assert rows["cpu float64"]["ms"] > 0 and rows["device cpu float64"]["ms"] > 0
    assert "| cpu float64 |" in done.stdout and "| device cpu float64 |" in done.stdout
