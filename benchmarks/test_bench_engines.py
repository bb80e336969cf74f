"""Engines on 2 CPU processes against one: samples/s and what each rank holds (issue 7 (b)).

Each case is a real `alp run` (the embedded default's model, a 160-clip demo corpus, 2 s
crops, 30 optimizer steps without checkpoints, the same global batch of 16: one process x 16
or two x 8) in a
subprocess; the figures come from its metrics log: samples/s of training, the peak RSS of
every rank, and each rank's parameters and optimizer state (ZeRO shards them: about 1/world).

Run: .venv/bin/python -m pytest benchmarks/test_bench_engines.py --benchmark-only
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
CASES = {
    "single": ["data.batch_size=16"],
    "ddp": ["data.batch_size=8", "train.nproc=2", "train.engine.name=ddp"],
    "zero1": ["data.batch_size=8", "train.nproc=2", "train.engine.name=deepspeed",
              "train.engine.zero_stage=1"],
    "zero2": ["data.batch_size=8", "train.nproc=2", "train.engine.name=deepspeed",
              "train.engine.zero_stage=2"],
    "zero3": ["data.batch_size=8", "train.nproc=2", "train.engine.name=deepspeed",
              "train.engine.zero_stage=3"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engines-cache")


@pytest.mark.parametrize("case", list(CASES))
def test_engine_throughput_and_memory(benchmark, case, cache, tmp_path):
    if case.startswith("zero"):
        pytest.importorskip("deepspeed")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "alp_cli.main", "run", f"output_dir={run_dir}",
           f"data.cache_dir={cache}", "data.source.num_clips=160", "data.source.max_seconds=2",
           "data.train_max_seconds=2", "train.max_steps=30", "train.progress=false",
           "eval.baseline=false", "eval.tasks=[]", "data.num_workers=0",
           # no checkpoint inside the timed steps: each engine writes its own (ZeRO-3 also
           # gathers the weights), which is I/O, not the training step being compared
           "train.checkpoint.every_epochs=null", *CASES[case]]
    env = {**os.environ, "OMP_NUM_THREADS": "1" if "train.nproc=2" in CASES[case] else "2"}

    def run() -> None:
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]

    benchmark.pedantic(run, rounds=1, iterations=1)
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    end = next(r for r in records if r["event"] == "train_end")
    memory = next(r for r in records if r["event"] == "memory")
    benchmark.extra_info.update(
        samples_per_s=end["samples_per_s"], peak_rss_mb_per_rank=memory["peak_mem_mb_per_rank"],
        state_mb_per_rank=memory["state_mb_per_rank"], threads_per_rank=env["OMP_NUM_THREADS"])
