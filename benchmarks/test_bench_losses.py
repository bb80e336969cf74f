"""Objective cost: forward + backward time and memory over batch sizes, and the local loss.

Run: make bench   (or: .venv/bin/python -m pytest benchmarks -k losses --benchmark-only)

Every round starts from cleared gradients (inputs and loss parameters), so no round pays for
accumulating into the gradients of the rounds before. Per case, besides the time,
``extra_info`` holds ``saved_mb`` (what the loss makes autograd keep for the backward pass
beyond the caller's own tensors: saved-tensor hooks around the loss call, not counting its
inputs or views of them; ``similarity_mb`` counts only the matrices against the global batch)
and ``peak_extra_mb`` (peak resident memory of one forward + backward in a fresh process, see
peak_memory.py). The distributed cases run
two real gloo processes: this one (rank 0, timed) and gloo_peer.py (rank 1), comparing the
local loss (local rows x global batch) with the naive global x global matrix.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from loss_cases import make_case, make_distributed_case, saved_mb  # noqa: E402

CASES = ([("infonce", b) for b in (256, 1024, 2048)]
         + [("siglip", b) for b in (256, 1024, 2048)]
         + [("captioning", b) for b in (16, 64, 128)]
         + [("coca", b) for b in (16, 64, 128)])
MODES = ("local", "naive-global")
ROUNDS = 5


def _peak_extra_mb(case: str, batch: int) -> float:
    out = subprocess.run([sys.executable, str(HERE / "peak_memory.py"), case, str(batch)],
                         check=True, capture_output=True, text=True)
    return round(json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_mb"], 1)


@pytest.mark.parametrize("case, batch", CASES, ids=[f"{c}-{b}" for c, b in CASES])
def test_loss_forward_backward(benchmark, case, batch):
    run = make_case(case, batch)
    benchmark.extra_info["saved_mb"] = saved_mb(run)
    benchmark.extra_info["peak_extra_mb"] = _peak_extra_mb(case, batch)
    loss = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert loss == loss  # a number, not NaN
    benchmark.extra_info["samples_per_s"] = round(batch / benchmark.stats.stats.mean, 1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gloo_pair():
    """A two-process gloo group: this process is rank 0, gloo_peer.py is rank 1."""
    port = _free_port()
    peer = subprocess.Popen([sys.executable, str(HERE / "gloo_peer.py"), str(port)])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                            world_size=2)

    def announce(mode: str, batch: int, steps: int) -> None:
        dist.broadcast(torch.tensor([MODES.index(mode), batch, steps]), src=0)

    try:
        yield announce
    finally:
        dist.broadcast(torch.tensor([-1, 0, 0]), src=0)
        dist.destroy_process_group()
        peer.wait(timeout=60)


@pytest.mark.parametrize("local_batch", [256, 2048])
@pytest.mark.parametrize("mode", MODES)
def test_distributed_infonce_local_vs_global(benchmark, gloo_pair, mode, local_batch):
    run = make_distributed_case(mode, local_batch, rank=0)
    gloo_pair(mode, local_batch, 2)
    benchmark.extra_info["saved_mb"] = saved_mb(run)
    # (local or global rows) x global columns; the batch sizes differ from EMBED_DIM, so the
    # gathered embeddings (global x EMBED_DIM) are never mistaken for similarity matrices
    benchmark.extra_info["similarity_mb"] = saved_mb(
        run, matrix=({local_batch, 2 * local_batch}, 2 * local_batch))
    benchmark.extra_info["global_batch"] = 2 * local_batch
    gloo_pair(mode, local_batch, ROUNDS + 1)
    loss = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert loss == loss
