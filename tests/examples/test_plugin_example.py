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


# -- the third-party engine: fsdp2 ------------------------------------------------------------
SMOKE = "configs/smoke.yaml"
FAST = ["eval.baseline=false", "eval.tasks=[]", "train.log_every=1", "train.progress=false"]
NO_DROPOUT = ["model.audio_encoder.dropout=0", "model.text_encoder.dropout=0"]


def _run_env(env: dict) -> dict:
    """The example's environment plus what the alp_train tests set for `alp run`."""
    return dict(env, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")


def _train_steps(run_dir: Path) -> dict[int, tuple[float, float]]:
    """(loss, grad_norm) per logged optimizer step (a step logged twice keeps the last)."""
    out = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["event"] == "train":
            out[rec["step"]] = (rec["loss"], rec["grad_norm"])
    return out


@pytest.mark.slow
def test_example_engine_is_listed_with_its_distribution(installed_example):
    out = alp(installed_example, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(c["kind"], c["name"]): c for c in json.loads(out.stdout)["components"]}
    assert rows[("engine", "fsdp2")]["distribution"] == "alp-plugin-example"
    assert rows[("engine", "ddp")]["distribution"] == "alp-train"  # beside the built-in ones


@pytest.mark.slow
@pytest.mark.parametrize("option, message", [
    ("train.optimizer.name=scaled-adam", "scaled-adam scales updates by whole-parameter"),
    ("train.grad_cache.chunk_size=4", "not supported with the fsdp2 engine"),
])
def test_plugin_engine_refuses_what_it_cannot_do_before_any_process(installed_example, option,
                                                                    message):
    """The engine's check_config runs in `alp run --check`, before ranks start."""
    out = alp(installed_example, "run", "--check", "train.engine.name=fsdp2", "train.nproc=2",
              option)
    assert out.returncode == 2
    assert message in out.stderr and "rank" not in out.stderr


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_two_processes_match_one_over_the_same_global_batch(installed_example, tmp_path):
    """One process with batch 8 (fsdp2 without sharding) and two sharded ranks with batch 4
    each see the same 8 clips per step: losses and gradient norms agree to float32 rounding."""
    from safetensors.torch import load_file

    env = _run_env(installed_example)
    common = [SMOKE, f"data.cache_dir={tmp_path / 'cache'}", *FAST, *NO_DROPOUT,
              "train.max_steps=3", "train.checkpoint.every_steps=3", "train.engine.name=fsdp2"]
    one, two = tmp_path / "one", tmp_path / "two"
    done = alp(env, "run", *common, f"output_dir={one}", "data.batch_size=8")
    assert done.returncode == 0, done.stderr[-3000:]
    done = alp(env, "run", *common, f"output_dir={two}", "data.batch_size=4", "train.nproc=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "starting 2 processes" in done.stdout
    ours, theirs = _train_steps(two), _train_steps(one)
    assert sorted(ours) == sorted(theirs) == [1, 2, 3]
    for step in ours:
        assert ours[step][0] == pytest.approx(theirs[step][0], rel=1e-5)  # loss
        assert ours[step][1] == pytest.approx(theirs[step][1], rel=1e-5)  # grad norm
    start = next(json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()
                 if json.loads(line)["event"] == "start")
    assert start["engine"] == "fsdp2" and start["world_size"] == 2
    # the weights gathered from the shards are the whole model, equal to one process's
    a = load_file(str(two / "checkpoint" / "model.safetensors"))
    b = load_file(str(one / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 2e-3  # Adam: ~lr x steps / 4
    ckpt = two / "checkpoints" / "step-00000003"
    assert (ckpt / "engine.safetensors").is_file() and (ckpt / "model.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_kill_and_resume_continues_the_same_run(installed_example, tmp_path):
    """SIGKILL the 2-process fsdp2 job, then --resume: weights and the full optimizer state
    come back from the gathered checkpoint and every step's loss equals the uninterrupted
    run's."""
    import signal
    import time

    env = _run_env(installed_example)
    args = [SMOKE, f"data.cache_dir={tmp_path / 'cache'}", *FAST, "train.max_steps=30",
            "train.epochs=5", "train.checkpoint.every_steps=5", "data.batch_size=4",
            "train.nproc=2", "train.engine.name=fsdp2"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    done = alp(env, "run", *args, f"output_dir={full}")
    assert done.returncode == 0, done.stderr[-3000:]
    with (tmp_path / "log.txt").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "alp_cli.main", "run", *args,
                                 f"output_dir={cut}"], env=env, cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while max(_train_steps(cut) if (cut / "metrics.jsonl").is_file() else [], default=0) < 12:
        assert proc.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
        assert time.monotonic() < deadline, "step 12 not reached"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both workers at once
    proc.wait(timeout=30)
    assert max(_train_steps(cut)) < 30, "the run ended before the kill: proves nothing"
    done = alp(env, "run", "--resume", str(cut))
    assert done.returncode == 0, done.stderr[-3000:]
    want, got = _train_steps(full), _train_steps(cut)
    assert sorted(got) == sorted(want) == list(range(1, 31))
    for step in want:
        assert got[step][0] == pytest.approx(want[step][0], rel=1e-6)


@pytest.mark.slow
@pytest.mark.distributed
def test_fsdp2_shards_nested_blocks_and_a_resume_takes_the_new_rates(installed_example,
                                                                     tmp_path):
    """A Zipformer (stacks of layers: ModuleLists inside ModuleLists) failed at start-up,
    sharded top-down; and a resume with overrides kept the checkpoint's rates."""
    from alp_train.optim.schedules import warmup_cosine

    env = _run_env(installed_example)
    args = [f"data.cache_dir={tmp_path / 'cache'}", *FAST, "data.batch_size=4",
            "train.nproc=2", "train.engine.name=fsdp2", "train.checkpoint.every_steps=2",
            "model.audio_encoder={name: zipformer, preset: tiny}"]
    run_dir = tmp_path / "run"
    done = alp(env, "run", SMOKE, *args, f"output_dir={run_dir}", "train.max_steps=2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    done = alp(env, "run", "--resume", str(run_dir), *args, "train.max_steps=4",
               "train.lr=0.001", "train.schedule.warmup_fraction=0")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = {r["step"]: r["lr"] for r in rows if r["event"] == "train"}
    assert sorted(rates) == [1, 2, 3, 4]
    assert [rates[3], rates[4]] == pytest.approx([0.001 * warmup_cosine(4, 0)(s)
                                                  for s in (2, 3)], rel=1e-6)


def test_fsdp2_in_one_process_steps_like_the_single_engine_with_a_loss_scaler():
    """One process is the single engine: its fp16 loss scaler unscales before clipping (the
    overridden step applied gradients still multiplied by the scale)."""
    import types

    import torch

    sys.path.insert(0, str(EXAMPLE / "src"))
    try:
        from alp_plugin_example.engine import FSDP2Engine
    finally:
        sys.path.remove(str(EXAMPLE / "src"))
    from tests.alp_train.test_loop import batch, make_task

    from alp_train.distributed import DistInfo
    from alp_train.engines.configs import SingleEngineConfig
    from alp_train.engines.torch_engines import SingleEngine

    stats = []
    for cls in (SingleEngine, FSDP2Engine):
        task = make_task()
        train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=100.0)
        config = SingleEngineConfig() if cls is SingleEngine else types.SimpleNamespace(
            reshard_after_forward=True, shard_module_lists=True)
        engine = cls(config, train, DistInfo())
        engine.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                     lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
        engine.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)  # as fp16 sets up
        out = engine.forward(task.prepare(batch(4, 1), engine.device))
        engine.backward(out.loss)
        stats.append(engine.step(True))
    assert stats[1]["grad_norm"] == pytest.approx(stats[0]["grad_norm"], rel=1e-9)
    assert stats[1]["grad_norm"] < 1e3  # not the scaled norm
