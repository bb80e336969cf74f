"""Runs that survive: SIGKILL mid-epoch then --resume logs the same losses, bit for bit, as a
run never stopped; SIGTERM saves a checkpoint and exits cleanly."""

from __future__ import annotations

import json
import signal

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

# 64 train clips / batch 8 = 8 steps an epoch; checkpoints every 5 steps and every epoch.
ARGS = ["train.epochs=12", "train.checkpoint.every_steps=5"]
STEPS = 96


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus_cache, alp):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", f"data.cache_dir={corpus_cache}",
                   *alp.FAST, *ARGS)
    assert done.returncode == 0, done.stderr
    return run_dir


def _start(alp, tmp_path, cache):
    run_dir = tmp_path / "run"
    proc = alp.start(tmp_path / "log.txt", alp.SMOKE, f"output_dir={run_dir}",
                     f"data.cache_dir={cache}", *alp.FAST, *ARGS)
    return run_dir, proc


def test_sigkill_mid_epoch_then_resume_is_bit_exact(reference, tmp_path, corpus_cache, alp):
    run_dir, proc = _start(alp, tmp_path, corpus_cache)
    alp.wait_for_step(run_dir, 13, proc)  # past the step-10 checkpoint, in epoch 1 (batch 5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert max(alp.losses(run_dir)) < STEPS, "the run ended before the kill: proves nothing"

    resumed = alp.run("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from step-" in resumed.stdout

    expected, got = alp.losses(reference), alp.losses(run_dir)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    assert got == expected  # every step's loss, exactly
    a = load_file(str(reference / "checkpoint" / "model.safetensors"))
    b = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    text = (run_dir / "metrics.jsonl").read_text()
    assert text.count('"event": "resume"') == 1
    # the steps between the checkpoint and the kill were logged by both runs: only once now
    steps = [json.loads(line)["step"] for line in text.splitlines()
             if json.loads(line)["event"] == "train"]
    assert steps == list(range(1, STEPS + 1))


def test_sigterm_saves_a_checkpoint_exits_cleanly_and_resumes(reference, tmp_path,
                                                               corpus_cache, alp):
    run_dir, proc = _start(alp, tmp_path, corpus_cache)
    alp.wait_for_step(run_dir, 7, proc)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    out = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM received: saved a checkpoint at step" in out and "Traceback" not in out
    stopped = int(out.split("checkpoint at step ")[1].split()[0])
    assert stopped < STEPS
    name = f"step-{stopped:08d}"
    assert (run_dir / "checkpoints" / name / "model.safetensors").is_file()
    assert (run_dir / "checkpoints" / "latest").read_text() == name
    resumed = alp.run("--resume", str(run_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert alp.losses(run_dir) == alp.losses(reference)


def test_keep_last_and_checkpoint_per_epoch(reference):
    folders = sorted(p.name for p in (reference / "checkpoints").glob("step-*"))
    assert folders == ["step-00000095", "step-00000096"]  # keep_last 2: every-5 and epoch 12
    assert (reference / "checkpoints" / "latest").read_text() == "step-00000096"


def test_resume_of_a_folder_without_checkpoints_is_a_clear_error(tmp_path, corpus_cache, alp):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: empty\n")
    done = alp.run("--resume", str(run_dir), f"data.cache_dir={corpus_cache}")
    assert done.returncode == 2
    assert "holds no complete checkpoint" in done.stderr


def test_a_resume_with_more_epochs_and_a_new_rate_trains_with_them(reference, tmp_path, alp,
                                                                    corpus_cache):
    # the checkpoint's optimizer and schedule state used to override the config: a run
    # extended by an epoch trained every new step at rate 0 (the old cosine had ended)
    import shutil

    import yaml

    from alp_train.metrics_log import read_metrics

    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    resumed = alp.run("--resume", str(run_dir), "train.epochs=13", "train.lr=0.001",
                      f"data.cache_dir={corpus_cache}")
    assert resumed.returncode == 0, resumed.stderr
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["event"] == "train"]
    new = [r for r in rows if r["step"] > STEPS]
    assert [r["step"] for r in new] == list(range(STEPS + 1, STEPS + 9))  # one more epoch
    # warm-up/cosine over the new 104 steps at the peak rate 0.001, from step 96 on
    from alp_train.optim.schedules import warmup_cosine

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    total = STEPS + 8
    factor = warmup_cosine(total, round(total * config["train"]["schedule"]["warmup_fraction"]))
    assert [r["lr"] for r in new] == pytest.approx([0.001 * factor(s - 1) for s in
                                                    range(STEPS + 1, total + 1)], rel=1e-9)
    assert all(r["lr"] > 0 for r in new)
    assert config["train"]["epochs"] == 13 and config["train"]["lr"] == 0.001
    old = yaml.safe_load((run_dir / "config.before-step-00000096.yaml").read_text())
    assert old["train"]["epochs"] == 12
