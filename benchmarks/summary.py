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
    for bench in data["benchmarks"]:
        stats = bench["stats"]
        extra = ", ".join(f"{k}={v}" for k, v in bench.get("extra_info", {}).items())
        print(f"  {bench['name']:<28} mean {stats['mean'] * 1e3:8.1f} ms  {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
