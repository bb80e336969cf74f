"""The ``alp eval`` benchmark protocol on tiny benchmarks written here in their real layouts.

Audio is tones whose pitch depends on the class, so a linear probe on even a random-weight
encoder's embeddings separates the classes; a shuffled-label control stays near chance.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.shared import write_table

from alp_core.errors import ConfigError
from alp_eval.cache import EmbeddingCache
from alp_eval.configs import BENCHMARK_TASK_CONFIGS, BENCHMARK_TASKS, SEDProbeConfig
from alp_eval.context import EvalContext, SplitEmbeddings
from alp_eval.datasets import load_desed
from alp_eval.protocol import BenchmarkTask as BenchmarkTaskProtocol
from alp_eval.protocol import FrameEncoder
from alp_eval.protocol.embeddings import ClipEmbeddings
from alp_eval.protocol.rounds import average_rounds
from alp_eval.protocol.run import evaluate_benchmarks, resolve_benchmark_tasks
from alp_eval.protocol.sed_probe import (
    clipped_events,
    run_sed_round,
    score_sed,
    sed_targets,
)
from alp_eval.protocol.task import BenchmarkTask
from alp_eval.report import render_benchmark_markdown

RATE = 16000
TINY_MODEL = {
    "audio_encoder": {"name": "transformer", "d_model": 32, "num_layers": 1, "num_heads": 2,
                      "ffn_dim": 64},
    "text_encoder": {"name": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "intermediate_size": 64},
    "caption_decoder": None, "embed_dim": 32,
}
PITCH = {"rain": 300.0, "rooster": 900.0, "dog": 2500.0, "Dog": 500.0, "Speech": 1500.0,
         "Frying": 3200.0, "Music": 700.0}


def _write(path, wave):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype("float32"), RATE)


def _tones(labels, seconds, seed, spans=None):
    """Sum of one tone per label (over its (onset, offset) span), plus faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    wave = 0.005 * rng.standard_normal(t.size)
    for k, label in enumerate(labels):
        onset, offset = spans[k] if spans else (0.0, seconds)
        on = (t >= onset) & (t < offset)
        freq = PITCH[label] * (1 + 0.03 * rng.standard_normal())
        wave += 0.25 * on * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))
    return wave


def write_esc50(root, per_class=2, corrupt=()):
    """ESC-50 layout: 5 folds x 3 classes x ``per_class`` half-second tones."""
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(("rain", "rooster", "dog")):
            for k in range(per_class):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                rows.append((name, fold, target, category, "False", "1", "A"))
                if name in corrupt:
                    (root / "audio").mkdir(parents=True, exist_ok=True)
                    (root / "audio" / name).write_bytes(b"RIFF" + bytes(range(256)) * 2)
                else:
                    _write(root / "audio" / name, _tones([category], 0.5, fold * 100 + k))
    write_table(root / "meta" / "esc50.csv",
           ("filename", "fold", "target", "category", "esc10", "src_file", "take"), rows)
    return root


def write_fsd50k(root):
    """FSD50K layout: 3 classes, clips holding 1-2 tones; train/val from dev, test eval."""
    gt = root / "FSD50K.ground_truth"
    vocab = ["Dog", "Speech", "Music"]
    write_table(gt / "vocabulary.csv", None, [(i, c, f"/m/{i}") for i, c in enumerate(vocab)])
    combos = [["Dog"], ["Speech"], ["Music"], ["Dog", "Speech"], ["Speech", "Music"],
              ["Dog", "Music"]]
    dev, ev = [], []
    for i in range(36):
        labels = combos[i % len(combos)]
        split = "val" if i % 6 == 5 and i < 24 else "train"
        if i < 24:
            dev.append((str(1000 + i), ",".join(labels), "m", split))
            _write(root / "FSD50K.dev_audio" / f"{1000 + i}.wav", _tones(labels, 0.5, i))
        else:
            ev.append((str(1000 + i), ",".join(labels), "m"))
            _write(root / "FSD50K.eval_audio" / f"{1000 + i}.wav", _tones(labels, 0.5, i))
    write_table(gt / "dev.csv", ("fname", "labels", "mids", "split"), dev)
    write_table(gt / "eval.csv", ("fname", "labels", "mids"), ev)
    return root


DESED_EVENTS = {  # file -> [(onset, offset, label)] in 3 s clips
    0: [(0.5, 2.0, "Dog")], 1: [(1.0, 2.5, "Speech")], 2: [(0.0, 1.5, "Frying")],
    3: [(0.5, 1.5, "Dog"), (1.5, 3.0, "Speech")], 4: [], 5: [(1.0, 3.0, "Frying")],
}


def write_desed(root, n_train=6, n_val=3, n_test=3):
    header = ("filename", "onset", "offset", "event_label")
    splits = {"train": ("metadata/train/synthetic21_train/soundscapes.tsv",
                        "audio/train/synthetic21_train/soundscapes", None, n_train),
              "val": ("metadata/validation/synthetic21_validation/soundscapes.tsv",
                      "audio/validation/synthetic21_validation/soundscapes",
                      "metadata/validation/synthetic21_validation/durations.tsv", n_val),
              "test": ("metadata/validation/validation.tsv", "audio/validation/validation",
                       "metadata/validation/validation_durations.tsv", n_test)}
    seed = 0
    for tsv, folder, durations, count in splits.values():
        rows, lengths = [], []
        for _ in range(count):
            seed += 1
            events = DESED_EVENTS[(seed * 7) % len(DESED_EVENTS)]
            name = f"{seed}.wav"
            rows += [(name, on, off, lab) for on, off, lab in events] or [(name, "", "", "")]
            lengths.append((name, "3.0"))
            _write(root / folder / name, _tones([e[2] for e in events], 3.0, seed,
                                                [(e[0], e[1]) for e in events]))
        write_table(root / tsv, header, rows, delimiter="\t")
        if durations:
            write_table(root / durations, ("filename", "duration"), lengths, delimiter="\t")
    return root


class Counting:
    """A :class:`FrameEncoder` around another that counts ``frames`` calls and clips."""

    def __init__(self, inner):
        self.inner, self.calls, self.clips = inner, 0, 0

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    @property
    def sample_rate(self):
        return self.inner.sample_rate

    def frames(self, waves):
        self.calls += 1
        self.clips += len(waves)
        return self.inner.frames(waves)


@pytest.fixture(scope="module")
def encoder():
    from alp_eval.pretrained import PretrainedALP

    return PretrainedALP.from_config({"model": TINY_MODEL}, seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {"esc50": write_esc50(root / "ESC-50-master"),
            "fsd50k": write_fsd50k(root / "FSD50K"), "desed": write_desed(root / "DESED"),
            "cache": root / "cache"}


def _task(name, root, **options):
    return BenchmarkTask(BENCHMARK_TASK_CONFIGS[name](root=str(root), **options), batch_size=8,
                         workers=2)


def test_esc50_five_folds_averaged_above_chance_and_shuffled_control(encoder, data):
    counting = Counting(encoder)
    assert isinstance(counting, FrameEncoder)
    task = _task("esc50", data["esc50"], attention_probe=True,
                 attention={"epochs": 15, "lrs": [3e-3], "weight_decays": [1e-4]})
    assert isinstance(task, BenchmarkTaskProtocol)
    linear, attention = task.run_benchmark(counting, EmbeddingCache(str(data["cache"])))
    assert (linear.task, attention.task) == ("esc50/linear-probe", "esc50/attention-probe")
    assert counting.calls == 4 and counting.clips == 30  # 30 clips, batches of 8, embedded once
    details = linear.details
    assert details["n_rounds"] == 5 and len(details["per_round"]) == 5
    assert (details["domain"], details["task_type"]) == ("sound", "multiclass")
    assert details["clips"] == {"listed": 30, "skipped_by_loader": 0, "failed_to_decode": 0,
                                "embedded": 30}
    folds = [r["accuracy"] for r in details["per_round"]]
    assert linear.metrics["accuracy"] == pytest.approx(np.mean(folds))
    assert linear.metrics["accuracy_std"] == pytest.approx(np.std(folds))
    assert linear.primary == "accuracy" and linear.value > 0.85
    assert linear.metrics["chance"] == pytest.approx(1 / 3)
    assert attention.value > 0.6 and len(attention.details["per_round"]) == 5
    assert "weight_decay" not in linear.metrics  # a chosen setting, kept per round only

    bench = task.load()
    labels = [c.labels for c in bench.clips]
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled = dataclasses.replace(bench, clips=tuple(
        dataclasses.replace(c, labels=labels[j]) for c, j in zip(bench.clips, order)))
    control = _task("esc50", data["esc50"])
    control.load = lambda: shuffled
    (result,) = control.run_benchmark(counting, EmbeddingCache(str(data["cache"])))
    assert counting.calls == 4  # labels are not part of the cache key: same embeddings
    assert result.value < 0.6 and abs(result.value - 1 / 3) < 0.25


def test_multilabel_benchmark_gives_map(encoder, data):
    (result,) = _task("fsd50k", data["fsd50k"]).run_benchmark(encoder)
    assert result.task == "fsd50k/linear-probe" and result.primary == "mAP"
    assert 0.6 < result.value <= 1.0
    assert {"micro_mAP", "lwlrap", "mAP_std"} <= set(result.metrics)
    assert result.metrics["mAP_std"] == 0.0 and result.details["n_rounds"] == 1
    assert result.details["clips"]["embedded"] == 36


def test_desed_sed_round_gives_segment_and_event_f1(encoder, data):
    (result,) = _task("desed", data["desed"], max_seconds=2.0).run_benchmark(encoder)
    assert result.task == "desed/sed" and result.primary == "event_f1_macro"
    for key in ("segment_f1", "segment_f1_macro", "event_f1", "event_f1_macro", "frame_mAP"):
        assert 0.0 <= result.metrics[key] <= 1.0, key
    assert result.details["frame_seconds"] == pytest.approx(0.04)
    assert result.details["per_round"][0]["median_window_frames"] == 11


def _oracle_embeddings(bench, hop=0.04, seconds=3.0):
    """ClipEmbeddings whose frames are each clip's ground-truth frame targets (+ a constant)."""
    n = round(seconds / hop)
    frames = [np.concatenate([sed_targets(c, bench.classes, hop, n).numpy(), np.ones((n, 1))],
                             axis=1).astype(np.float32) for c in bench.clips]
    return ClipEmbeddings(
        ids=[c.id for c in bench.clips], pooled=np.stack([f.mean(0) for f in frames]),
        frames=np.concatenate(frames), offsets=np.arange(len(frames) + 1) * n,
        seconds=np.full(len(frames), seconds, dtype=np.float32), frame_seconds=hop)


def test_sed_path_scores_a_perfect_oracle_one(data):
    bench = load_desed(data["desed"])
    hop = 0.04
    test = bench.round_clips(0)["test"]
    probs = {c.id: sed_targets(c, bench.classes, hop, 75).double() for c in test}
    reference = {c.id: clipped_events(c, 3.0) for c in test}
    scores = score_sed(probs, reference, {c.id: 3.0 for c in test}, bench.classes, hop)
    assert scores["segment_f1"] == scores["event_f1"] == 1.0
    assert scores["segment_error_rate"] == scores["event_error_rate"] == 0.0
    # the whole round (frame probe fit on oracle features, threshold, median filter, metrics)
    emb = _oracle_embeddings(bench, hop)
    out = run_sed_round(emb, bench.round_clips(0), bench.classes,
                        BENCHMARK_TASK_CONFIGS["desed"](root=".").linear_probe,
                        SEDProbeConfig(), seed=0)
    assert out["segment_f1"] == out["event_f1"] == out["event_f1_macro"] == 1.0
    assert out["frame_mAP"] == 1.0


def test_reference_events_are_cut_to_the_embedded_seconds(data):
    clip = next(c for c in load_desed(data["desed"]).clips if len(c.events) == 2)
    assert clipped_events(clip, 1.0) == [(0.5, 1.0, "Dog")]


def test_a_clip_that_fails_to_decode_is_counted_not_fatal(encoder, tmp_path):
    root = write_esc50(tmp_path / "esc", corrupt=("3-10-A-1.wav",))
    (result,) = _task("esc50", root).run_benchmark(encoder)
    clips = result.details["clips"]
    assert clips["failed_to_decode"] == 1 and clips["embedded"] == 29
    (failed,) = result.details["failed"]
    assert failed["id"] == "3-10-A-1" and failed["reason"] == "unreadable"
    assert failed["path"].endswith("audio/3-10-A-1.wav")
    assert len(result.details["per_round"]) == 5 and result.value > 0.8


def test_averaging_keeps_nan_rounds_out_and_reports_population_std():
    out = average_rounds([{"accuracy": 0.5, "weight_decay": 1e-3}, {"accuracy": 1.0},
                          {"accuracy": math.nan}])
    assert out == {"accuracy": 0.75, "accuracy_std": 0.25}


def test_report_json_and_markdown(encoder, data, tmp_path):
    tasks = resolve_benchmark_tasks([
        {"name": "esc50", "root": str(data["esc50"])},
        {"name": "fsd50k", "root": str(data["fsd50k"])},
        {"name": "desed", "root": str(data["desed"]), "max_seconds": 2.0},
    ], batch_size=8, workers=2)
    cache = EmbeddingCache(str(tmp_path / "cache"))
    report = evaluate_benchmarks({"tiny": encoder}, tasks, cache, out_dir=tmp_path / "out",
                                 meta={"model_path": "x"})
    saved = json.loads((tmp_path / "out" / "eval_report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["models"] == ["tiny"]
    assert saved["meta"]["fingerprints"] == {"tiny": encoder.fingerprint}
    assert list(saved["results"]["tiny"]) == ["esc50/linear-probe", "fsd50k/linear-probe",
                                              "desed/sed"]
    sound = saved["summary"]["tiny"]["domains"]["linear"]["sound"]
    values = [saved["results"]["tiny"][t]["metrics"][saved["results"]["tiny"][t]["primary"]]
              for t in sound["tasks"]]
    assert sound["n_tasks"] == 3 and sound["mean"] == pytest.approx(np.mean(values))
    assert saved["summary"]["tiny"]["benchmark_average"] == pytest.approx(np.mean(values))
    assert saved["meta"]["cache_stats"]["writes"] == 3
    md = (tmp_path / "out" / "eval_report.md").read_text()
    assert md == render_benchmark_markdown(saved)
    for text in ("## esc50 (sound, multiclass)", "| accuracy (primary) | ", " ± ",
                 "## desed (sound, sed)", "| event_f1_macro (primary) |", "| segment_f1 |",
                 "## Domain averages (primary metrics)", "| sound | ", "5-fold",
                 "30 listed, 0 skipped by the loader", "**Benchmark average**"):
        assert text in md, text


def test_registered_tasks_and_their_configs():
    from alp_core.manager import new_plugin_manager

    pm = new_plugin_manager()
    names = set(pm.records("eval_task"))
    assert {"linear-probe", "retrieval", "zero-shot"} <= names
    assert set(BENCHMARK_TASKS) <= names and "desed" in names
    with pytest.raises(ConfigError, match=r"tasks.0.root: required key is missing"):
        resolve_benchmark_tasks([{"name": "esc50"}], pm=pm)
    with pytest.raises(ConfigError, match=r"tasks.0: 'linear-probe' runs on a training run"):
        resolve_benchmark_tasks([{"name": "linear-probe"}], pm=pm)
    with pytest.raises(ConfigError, match="top_k unknown to the esc50 loader"):
        resolve_benchmark_tasks([{"name": "esc50", "root": ".", "loader": {"top_k": 5}}], pm=pm)
    with pytest.raises(ConfigError, match="listed twice"):
        resolve_benchmark_tasks([{"name": "gtzan", "root": "."}] * 2, pm=pm)
    (task,) = resolve_benchmark_tasks([{"name": "gtzan", "root": "."}], pm=pm)
    split = SplitEmbeddings(["a"], torch.zeros(1, 2), None, [()], [{}])
    with pytest.raises(ConfigError, match="alp eval CHECKPOINT --tasks gtzan"):
        task.run(EvalContext(split, split, None))
