"""`alp eval` retrieval on corpus test sets: the corpus read by its recipe, five captions per
clip, metrics equal to ranking the PretrainedALP embeddings by hand, decode failures counted."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.shared import TINY_ALP_MODEL

from alp_core.errors import ConfigError
from alp_eval.metrics import retrieval_metrics
from alp_eval.pretrained import PretrainedALP
from alp_eval.protocol.retrieval_sets import RETRIEVAL_SET_CONFIGS, RetrievalSetTask
from alp_eval.protocol.run import evaluate_benchmarks, resolve_benchmark_tasks
from alp_eval.retrieval import build_gallery

MODEL = TINY_ALP_MODEL
SOUNDS = ["rain", "a dog", "a bell", "an engine", "birds", "wind"]


def _tone(path, seconds, freq, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)


def _audiocaps(root, broken=()):
    """AudioCaps layout: test.csv (5 rows per clip) + audio/test/<ytid>_<start>.wav."""
    rows, n = [], 0
    for i, sound in enumerate(SOUNDS):
        ytid = f"vid{i:08d}"
        for k in range(5):
            n += 1
            rows.append([n, ytid, 30, f"{sound} heard {k} times"])
        path = root / "audio" / "test" / f"{ytid}_30.wav"
        if ytid in broken:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF????WAVEjunk" * 4)
        else:
            _tone(path, 1.0 + 0.5 * i, 200.0 * (i + 1))
    for split in ("train", "test"):
        with open(root / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
            writer.writerows(rows if split == "test" else [])
    return root


@pytest.fixture(scope="module")
def encoder():
    return PretrainedALP.from_config({"model": MODEL}, seed=1)


def test_audiocaps_retrieval_equals_ranking_the_embeddings_by_hand(tmp_path, encoder):
    root = _audiocaps(tmp_path)
    task = RetrievalSetTask(RETRIEVAL_SET_CONFIGS["audiocaps-retrieval"](root=str(root)))
    entries = task.test_entries()
    assert len(entries) == 6 and all(len(e.captions) == 5 for e in entries)
    (result,) = task.run_benchmark(encoder)
    assert result.task == "audiocaps-retrieval" and result.details["domain"] == "sound"
    assert result.details["clips"]["embedded"] == 6 and result.details["captions"] == 30
    audio = encoder.embed_audio([e.audio for e in entries])
    texts, relevant = build_gallery([tuple(e.captions) for e in entries])
    sims = audio @ encoder.embed_text(texts).T
    a2t = retrieval_metrics(sims, relevant)
    t2a = retrieval_metrics(sims.T, relevant.T)
    assert result.metrics["a2t_R@1"] == pytest.approx(a2t["R@1"], abs=1e-6)
    assert result.metrics["a2t_mAP@10"] == pytest.approx(a2t["mAP@10"], abs=1e-6)
    assert result.metrics["t2a_R@5"] == pytest.approx(t2a["R@5"], abs=1e-6)
    assert torch.isfinite(torch.tensor(list(result.metrics.values()))).all()
    # decoded on --workers threads (the option was accepted and ignored), same result
    threaded = RetrievalSetTask(RETRIEVAL_SET_CONFIGS["audiocaps-retrieval"](root=str(root)),
                                batch_size=4, workers=3)
    assert threaded.workers == 3
    assert threaded.run_benchmark(encoder)[0].metrics == pytest.approx(result.metrics)


def test_an_unreadable_clip_is_left_out_within_the_recipes_budget(tmp_path, encoder):
    root = _audiocaps(tmp_path, broken=("vid00000002",))
    task = RetrievalSetTask(RETRIEVAL_SET_CONFIGS["audiocaps-retrieval"](
        root=str(root), loader={"max_missing": 0.5}))
    (result,) = task.run_benchmark(encoder)
    assert result.details["clips"] == {"listed": 5, "failed_to_decode": 0, "embedded": 5}
    assert result.details["captions"] == 25


def test_retrieval_sets_run_through_alp_eval_and_need_a_text_tower(tmp_path, encoder):
    root = _audiocaps(tmp_path)
    tasks = resolve_benchmark_tasks([{"name": "audiocaps-retrieval", "root": str(root)}])
    report = evaluate_benchmarks({"tiny": encoder}, tasks, None, out_dir=tmp_path / "out")
    assert "audiocaps-retrieval" in report["results"]["tiny"]
    assert (tmp_path / "out" / "eval_report.md").read_text().count("audiocaps-retrieval") >= 1
    audio_only = PretrainedALP.from_config({"model": {**MODEL, "text_encoder": None,
                                                      "caption_decoder": {
                                                          "name": "transformer", "d_model": 32,
                                                          "num_layers": 1, "num_heads": 2,
                                                          "ffn_dim": 64, "max_tokens": 16}}})
    with pytest.raises(ConfigError, match="no text tower"):
        tasks[0].run_benchmark(audio_only)


def test_a_clip_that_fails_to_decode_is_listed_in_the_markdown_report(tmp_path, encoder):
    # the report read a 'reason' the retrieval sets did not record: alp eval raised after all
    # its compute and wrote no eval_report.md; the retrieval mean was never shown there
    root = _audiocaps(tmp_path)
    wav = root / "audio" / "test" / "vid00000003_30.wav"
    wav.write_bytes(wav.read_bytes()[:44 + 200])  # its header announces more than it holds
    tasks = resolve_benchmark_tasks([{"name": "audiocaps-retrieval", "root": str(root)}])
    report = evaluate_benchmarks({"tiny": encoder}, tasks, None, out_dir=tmp_path / "out")
    details = report["results"]["tiny"]["audiocaps-retrieval"]["details"]
    assert details["clips"]["failed_to_decode"] == 1
    assert details["failed"][0]["reason"] == "unreadable"
    md = (tmp_path / "out" / "eval_report.md").read_text()
    assert "Failed clips:" in md and "vid00000003_30.wav (unreadable)" in md
    assert "- clips: 6 listed, 1 failed to decode, 5 embedded; 25 captions" in md
    assert "protocol: None" not in md
    assert "**Retrieval mean**" in md
