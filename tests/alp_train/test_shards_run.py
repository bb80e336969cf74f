"""`alp run` streaming tar shards (``data.source.name=shards``): the same report as from
manifests, a SIGKILL mid-epoch then --resume bit-exact with two loader workers (also with the
features computed in the main process), an audio-hours budget, and two processes."""

from __future__ import annotations

import json
import signal

import pytest
from safetensors.torch import load_file

from alp_data.demo import DemoCorpusConfig
from alp_data.shards.writer import write_shards
from alp_data.sources import DemoSource

pytestmark = pytest.mark.slow

# 65 train clips (10 per shard), batch 8, drop_last: 8 steps an epoch
ARGS = ["data.num_workers=2", "train.epochs=6", "train.checkpoint.every_steps=5"]
STEPS = 48


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """The smoke config's demo corpus, written as tar shards per split."""
    root = tmp_path_factory.mktemp("shards")
    config = DemoCorpusConfig(num_clips=80, max_seconds=2.0)
    manifests = DemoSource(config).prepare(root / "corpus")
    for split, path in manifests.items():
        write_shards(str(path), str(root / split), max_clips_per_shard=10)
    return [f"data.source={{name: shards, train: {root / 'train'}, test: {root / 'test'}}}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shards, alp):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", *shards, *alp.FAST, *ARGS)
    assert done.returncode == 0, done.stderr
    return run_dir


def test_a_run_from_shards_reports_the_same_tasks_as_from_manifests(tmp_path, shards, alp,
                                                                      corpus_cache):
    reports = {}
    for name, source in (("shards", shards), ("manifest", [f"data.cache_dir={corpus_cache}"])):
        done = alp.run(alp.SMOKE, f"output_dir={tmp_path / name}", *source)
        assert done.returncode == 0, done.stderr
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    a, b = reports["shards"], reports["manifest"]
    assert a["models"] == b["models"] == ["pretrained", "random-init"]
    for model in a["models"]:
        assert set(a["results"][model]) == set(b["results"][model])
        assert a["results"][model]["retrieval"]["details"] == b["results"][model]["retrieval"][
            "details"]  # the same 15 test clips and captions, each once
    start = json.loads((tmp_path / "shards" / "metrics.jsonl").read_text().splitlines()[0])
    assert start["train_clips"] == 65 and start["test_clips"] == 15


def test_sigkill_mid_epoch_then_resume_from_shards_is_bit_exact(reference, tmp_path, shards,
                                                                 alp):
    run_dir = tmp_path / "run"
    proc = alp.start(tmp_path / "log.txt", alp.SMOKE, f"output_dir={run_dir}", *shards,
                     *alp.FAST, *ARGS)
    alp.wait_for_step(run_dir, 13, proc)  # past the step-10 checkpoint: epoch 1, batch 3
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert max(alp.losses(run_dir)) < STEPS, "the run ended before the kill: proves nothing"
    resumed = alp.run("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    expected, got = alp.losses(reference), alp.losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1))
    assert got == expected  # the stream resumed at the same batch of the same order
    a = load_file(str(reference / "checkpoint" / "model.safetensors"))
    b = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    assert all(a[k].equal(b[k]) for k in a)


def test_features_on_the_device_train_bit_exact_like_workers_and_resume(reference, tmp_path,
                                                                       shards, alp):
    """``data.features_on=device``: the workers only decode and the main process computes
    fbank + SpecAugment per batch. On the CPU those are the workers' floats, so the losses
    equal the reference run's bit for bit, also across a SIGKILL and --resume."""
    run_dir = tmp_path / "run"
    proc = alp.start(tmp_path / "log.txt", alp.SMOKE, f"output_dir={run_dir}", *shards,
                     *alp.FAST, *ARGS, "data.features_on=device")
    alp.wait_for_step(run_dir, 13, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert max(alp.losses(run_dir)) < STEPS, "the run ended before the kill: proves nothing"
    resumed = alp.run("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert alp.losses(run_dir) == alp.losses(reference)
    said = "computed on cpu in the main process (the loader workers only decode)"
    assert said in (tmp_path / "log.txt").read_text() and said in resumed.stderr
    assert "data.features_on=device on the CPU" in resumed.stderr  # and why it is slower here


def test_an_audio_hours_budget_stops_the_run(tmp_path, shards, alp):
    run_dir = tmp_path / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", *shards, *alp.FAST,
                   "train.epochs=50", "train.max_audio_hours=0.02")  # 72 s of audio
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    end = next(r for r in records if r["event"] == "train_end")
    steps = [r for r in records if r["event"] == "train"]
    assert 5 <= end["steps"] <= 9, end  # 8 clips x 1-2 s a step: 72 s takes 5-9 steps
    assert len(steps) == end["steps"]  # stopped by the budget, not by the 50 epochs


@pytest.mark.distributed
def test_two_processes_stream_their_own_halves(tmp_path, shards, alp):
    run_dir = tmp_path / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", *shards, *alp.FAST, *alp.NO_DROPOUT,
                   "train.nproc=2", "train.engine.name=ddp", "data.batch_size=4")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start = records[0]
    assert start["world_size"] == 2
    end = next(r for r in records if r["event"] == "train_end")
    assert end["steps"] == 8 and end["samples"] == 64  # 65 clips: 8 x 4 x 2, one left over
