"""Run benchmark tasks on one frozen encoder and write ``eval_report.json`` / ``.md``.

Task specs are ``{name, **options}`` mappings (``alp eval --tasks`` or the ``tasks`` list of an
eval YAML); each is resolved through the ``alp_eval_tasks`` hook like any component, and must
be a benchmark task (its config subclasses :class:`~alp_eval.configs.BenchmarkTaskConfig`).
The embedding cache defaults to ``<checkpoint or run folder>/eval_cache``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alp_core import ConfigError, resolve_component
from alp_core.manager import get_plugin_manager
from alp_eval.cache import EmbeddingCache
from alp_eval.configs import BenchmarkTaskConfig
from alp_eval.context import TaskResult
from alp_eval.report import build_report, write_benchmark_report

__all__ = ["benchmark_task_names", "default_cache_url", "encoder_label", "evaluate_benchmarks",
           "resolve_benchmark_tasks"]

log = logging.getLogger(__name__)


def benchmark_task_names(pm: Any = None) -> list[str]:
    """The registered eval tasks that are benchmarks (runnable by ``alp eval``)."""
    pm = pm or get_plugin_manager()
    return sorted(name for name, rec in pm.records("eval_task").items()
                  if issubclass(rec.config_cls, BenchmarkTaskConfig))


def resolve_benchmark_tasks(specs: Sequence[Mapping[str, Any]], *, batch_size: int = 16,
                            workers: int = 4, pm: Any = None) -> list[Any]:
    """Validate every spec (errors name ``tasks.<i>``) and build the tasks."""
    pm = pm or get_plugin_manager()
    valid = benchmark_task_names(pm)
    resolved, seen = [], set()
    for i, spec in enumerate(specs):
        item = resolve_component(pm, "eval_task", dict(spec), f"tasks.{i}")
        if not isinstance(item.config, BenchmarkTaskConfig):
            raise ConfigError(f"tasks.{i}: {item.record.name!r} runs on a training run's own "
                              f"split (alp run), not on a benchmark; alp eval runs: "
                              f"{', '.join(valid)}")
        if item.record.name in seen:
            raise ConfigError(f"tasks.{i}: {item.record.name!r} is listed twice")
        seen.add(item.record.name)
        resolved.append(item)
    return [item.build(batch_size=batch_size, workers=workers) for item in resolved]


def default_cache_url(path: str | os.PathLike) -> str:
    """``<folder>/eval_cache``: the folder itself for a checkpoint/run/pretrained folder,
    the file's folder for a weights file."""
    path = Path(path)
    return str((path.parent if path.is_file() else path) / "eval_cache")


def encoder_label(path: str | os.PathLike) -> str:
    """A short column name for an encoder path: the run's name for a run's checkpoint
    folder (``run/checkpoint`` → ``run``; ``run/checkpoints/step-N`` → ``run@step-N``)."""
    path = Path(path).absolute()
    if path.is_file():
        path = path.parent
    if path.name == "checkpoint":
        return path.parent.name
    if path.parent.name == "checkpoints":
        return f"{path.parent.parent.name}@{path.name}"
    return path.name


def evaluate_benchmarks(encoders: Mapping[str, Any], tasks: Sequence[Any],
                        cache: EmbeddingCache | None, *,
                        out_dir: str | os.PathLike | None = None,
                        meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run every task on each encoder (``label -> encoder``, a report column each); the
    report, written to ``out_dir`` when given."""
    t0 = time.perf_counter()
    results: dict[str, list[TaskResult]] = {}
    timings: dict[str, float] = {}
    for label, encoder in encoders.items():
        results[label] = []
        for task in tasks:
            t1 = time.perf_counter()
            log.info("alp eval: %s on %s", task.name, label)
            results[label] += task.run_benchmark(encoder, cache)
            timings[f"{label}/{task.name}"] = round(time.perf_counter() - t1, 3)
    timings["total"] = round(time.perf_counter() - t0, 3)
    report = build_report(results, {
        "fingerprints": {label: str(e.fingerprint) for label, e in encoders.items()},
        **(meta or {}),
        "cache": cache.url if cache is not None else None,
        "cache_stats": dict(cache.stats) if cache is not None else None,
        "timings_s": timings,
    })
    if out_dir is not None:
        write_benchmark_report(report, Path(out_dir))
    return report
