"""Gradient accumulation under two real gloo processes, and DeepSpeed's CPU offload.

One process with micro-batch 4 and two processes with micro-batch 2 each, both accumulating
2 micro-batches per optimizer step, see the same 4 clips in each micro-step (the samplers
stride one global order) and the same 8 per step. With dropout off the logged losses (mean
over micro-steps and ranks) and the gradient norms agree within float32 rounding of another
reduction order (relative 1e-5), and so do the weights after the run. A wrong accumulation
(a missing 1/accum, a step or a gradient sync at every micro-step, DeepSpeed counting
micro-steps differently from the loop) changes the norm or the number of steps.

DeepSpeed's offload runs its optimizer on the fp32 partitions in host memory (our AdamW; no
DeepSpeedCPUAdam build), which on the CPU exercises the offload code paths though it moves
nothing between devices.
"""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

pytestmark = [pytest.mark.slow, pytest.mark.distributed]

STEPS = 3
COMMON = ["train.max_steps=3", "train.grad_accum_steps=2"]


def _records(run_dir, event):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == event]


@pytest.fixture(scope="module")
def single(tmp_path_factory, corpus_cache, alp):
    run_dir = tmp_path_factory.mktemp("single-accum") / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", f"data.cache_dir={corpus_cache}",
                   *alp.FAST, *alp.NO_DROPOUT, *COMMON, "data.batch_size=4")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


ENGINES = {
    "ddp": ["train.engine.name=ddp"],
    "zero2-offload-optimizer": ["train.engine.name=deepspeed", "train.engine.zero_stage=2",
                                "train.engine.offload_optimizer=true"],
    "zero3-offload-all": ["train.engine.name=deepspeed", "train.engine.zero_stage=3",
                          "train.engine.offload_optimizer=true",
                          "train.engine.offload_params=true"],
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_accumulation_over_two_processes_matches_one(engine, single, tmp_path, corpus_cache,
                                                     alp):
    if engine.startswith("zero"):
        pytest.importorskip("deepspeed")
    run_dir = tmp_path / "run"
    done = alp.run(alp.SMOKE, f"output_dir={run_dir}", f"data.cache_dir={corpus_cache}",
                   *alp.FAST, *alp.NO_DROPOUT, *COMMON, "data.batch_size=2", "train.nproc=2",
                   *ENGINES[engine])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ours, theirs = _records(run_dir, "train"), _records(single, "train")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == [1, 2, 3]
    for a, b in zip(ours, theirs):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    # 3 steps x 2 micro-steps x 4 clips = 24 clips seen, in both runs
    end, ref_end = _records(run_dir, "train_end")[0], _records(single, "train_end")[0]
    assert end["steps"] == ref_end["steps"] == STEPS
    assert end["samples"] == ref_end["samples"] == STEPS * 2 * 4
    a = load_file(str(run_dir / "checkpoint" / "model.safetensors"))
    b = load_file(str(single / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 2e-3  # Adam's rounding in ~0-gradient coordinates (see the engines test)
