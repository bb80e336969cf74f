"""Peak extra resident memory of one loss forward + backward, measured in a fresh process.

Run by the loss benchmarks as ``python benchmarks/peak_memory.py CASE BATCH``; prints JSON.
CPU tensors have no allocator statistics, so the figure is the process's peak RSS (VmHWM,
reset through /proc/self/clear_refs just before the call) minus its RSS before the call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(case: str, batch: int) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    from loss_cases import make_case

    run = make_case(case, batch)
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    run()
    peak = _status_kb("VmHWM")
    print(json.dumps({"case": case, "batch": batch, "peak_extra_mb": (peak - before) / 1024}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
