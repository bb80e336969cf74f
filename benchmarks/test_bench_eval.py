"""Evaluation throughput: embedding extraction (clips/s, seconds of audio per second) and
probe fitting time per round, on an ESC-50-layout set of 3-class tones.

Run: .venv/bin/python -m pytest benchmarks/test_bench_eval.py --benchmark-only
The encoder is the default run's size (Transformer d_model 128, 3 layers) with random weights:
extraction cost does not depend on the weights.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from alp_eval.configs import LinearProbeConfig
from alp_eval.datasets import load_benchmark
from alp_eval.pretrained import PretrainedALP
from alp_eval.protocol.embeddings import extract_clips
from alp_eval.protocol.rounds import round_roles, run_linear_round

MODEL = {
    "audio_encoder": {"name": "transformer", "d_model": 128, "num_layers": 3, "num_heads": 4,
                      "ffn_dim": 512},
    "text_encoder": {"name": "bert", "hidden_size": 128, "num_layers": 2, "num_heads": 2,
                     "intermediate_size": 512, "tokenizer": "minilm"},
    "embed_dim": 128,
}
SECONDS = 5.0
PITCH = {"rain": 300.0, "rooster": 700.0, "dog": 1500.0}


@pytest.fixture(scope="module")
def esc50(tmp_path_factory):
    """5 folds x 3 classes x 8 clips of 5 s at 16 kHz (120 clips, 600 s of audio)."""
    root = tmp_path_factory.mktemp("esc50")
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    t = np.arange(int(SECONDS * 16000)) / 16000
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(PITCH):
            for k in range(8):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                wave = 0.3 * np.sin(2 * np.pi * PITCH[category] * t) + 0.05 * rng.standard_normal(
                    t.size)
                sf.write(root / "audio" / name, wave.astype(np.float32), 16000)
                rows.append((name, fold, target, category, "False", "1", "A"))
    (root / "meta").mkdir()
    with open(root / "meta" / "esc50.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("filename", "fold", "target", "category", "esc10", "src_file", "take"))
        writer.writerows(rows)
    return load_benchmark("esc50", str(root))


@pytest.fixture(scope="module")
def encoder():
    return PretrainedALP.from_config({"model": MODEL}, seed=0)


@pytest.fixture(scope="module")
def embeddings(esc50, encoder):
    return extract_clips(esc50.clips, encoder, max_seconds=SECONDS, keep_frames=False)


def test_extraction(benchmark, esc50, encoder):
    benchmark.pedantic(lambda: extract_clips(esc50.clips, encoder, max_seconds=SECONDS,
                                             keep_frames=False), rounds=3, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(clips_per_s=round(len(esc50.clips) / mean, 1),
                                audio_seconds_per_s=round(len(esc50.clips) * SECONDS / mean, 1))


def test_linear_probe_round(benchmark, esc50, embeddings):
    roles = round_roles(esc50, 0, embeddings)
    result = benchmark.pedantic(
        lambda: run_linear_round(esc50, 0, roles, embeddings, LinearProbeConfig(), 0),
        rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(train_clips=len(roles["train"]), test_clips=len(roles["test"]),
                                accuracy=round(float(result["accuracy"]), 3))
