"""Rank 1 of the distributed loss benchmark: repeats whatever step rank 0 announces.

Started by benchmarks/test_bench_losses.py as ``python benchmarks/gloo_peer.py PORT``. Each
command is broadcast from rank 0 as (mode, local batch, steps); mode -1 ends the loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

MODES = ("local", "naive-global")


def main(port: int) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from loss_cases import make_distributed_case

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=1, world_size=2)
    command = torch.zeros(3, dtype=torch.int64)
    while True:
        dist.broadcast(command, src=0)
        mode, batch, steps = command.tolist()
        if mode < 0:
            break
        run = make_distributed_case(MODES[mode], batch, rank=1)
        for _ in range(steps):
            run()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]))
