"""Runs that survive: SIGKILL mid-epoch then --resume logs the same losses, bit for bit, as a
run never stopped; SIGTERM saves a checkpoint and exits cleanly."""

from __future__ import annotations

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
