"""Print the throughput figures (extra_info) of the newest saved benchmark run.

Run: .venv/bin/python benchmarks/summary.py   (after `make bench`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    runs = sorted(Path(".benchmarks").glob("*/*.json"))
    if not runs:
        print("no saved benchmark run under .benchmarks/; run `make bench` first")
        return 1
    data = json.loads(runs[-1].read_text())
    print(f"{runs[-1]}  ({data['machine_info'].get('cpu', {}).get('brand_raw', '?')})")
    means = {}
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        means[bench["name"]] = stats["mean"]
        extra = ", ".join(f"{k}={v}" for k, v in bench.get("extra_info", {}).items())
        print(f"  {bench['name']:<28} mean {stats['mean'] * 1e3:8.1f} ms  {extra}")
    for line in engine_overhead(means):
        print(line)
    return 0


def engine_overhead(means: dict[str, float]) -> list[str]:
    """The engine step's mean over the bare loop's, per batch size (InfoNCE, the same model,
    batch and optimizer: test_bench_train_step.py); the goal is at most 3 % more."""
    lines = []
    for name, mean in sorted(means.items()):
        if not name.startswith("test_bare_step["):
            continue
        batch = name[len("test_bare_step["):-1]
        engine = means.get(f"test_train_step[{batch}-infonce]")
        if engine is not None:
            lines.append(f"  engine overhead, batch {batch}: {100 * (engine / mean - 1):+.1f} % "
                         "(engine step mean / bare loop mean - 1; goal <= 3 %)")
    return lines


if __name__ == "__main__":
    sys.exit(main())
