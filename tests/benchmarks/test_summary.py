"""benchmarks/summary.py prints the engine overhead its train-step benchmark promises."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from summary import engine_overhead  # noqa: E402


def test_engine_overhead_is_the_engine_mean_over_the_bare_mean_per_batch():
    means = {"test_bare_step[16]": 0.100, "test_train_step[16-infonce]": 0.102,
             "test_train_step[16-coca]": 0.300, "test_bare_step[32]": 0.200,
             "test_train_step[32-infonce]": 0.196, "test_loader_epoch[0]": 1.0}
    assert engine_overhead(means) == [
        "  engine overhead, batch 16: +2.0 % (engine step mean / bare loop mean - 1; goal "
        "<= 3 %)",
        "  engine overhead, batch 32: -2.0 % (engine step mean / bare loop mean - 1; goal "
        "<= 3 %)"]
