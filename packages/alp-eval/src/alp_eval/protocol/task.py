"""A registered benchmark eval task: load the benchmark, embed it once, run every round.

:class:`BenchmarkTask` is what the ``alp_eval_tasks`` records of ``esc50``, ..., ``desed``
build (``factory(config)``). It implements :class:`alp_eval.protocol.BenchmarkTask`:
``run_benchmark(encoder, cache)`` returns one :class:`~alp_eval.context.TaskResult` per probe
kind — ``<name>/linear-probe`` (or ``<name>/sed`` for SED benchmarks) and, when configured,
``<name>/attention-probe`` — with each metric averaged over the protocol rounds and its
population std as ``<metric>_std``; the details hold the domain, the protocol, every round's
metrics, the clip counts (listed, skipped by the loader, failed to decode, embedded), the
extraction figures and the fit time.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from alp_core.errors import ConfigError
from alp_eval.cache import EmbeddingCache
from alp_eval.configs import BenchmarkTaskConfig
from alp_eval.context import EvalContext, TaskResult
from alp_eval.datasets import Benchmark, load_benchmark
from alp_eval.protocol.embeddings import ClipEmbeddings, load_or_extract
from alp_eval.protocol.rounds import (
    PRIMARY,
    average_rounds,
    round_roles,
    run_attention_round,
    run_linear_round,
)

__all__ = ["BenchmarkTask", "MAX_FAILED_LISTED"]

log = logging.getLogger(__name__)

#: failed clips listed by path in a result's details (all are counted)
MAX_FAILED_LISTED = 20


class BenchmarkTask:
    """One standard benchmark on a frozen encoder (module docstring)."""

    def __init__(self, config: BenchmarkTaskConfig, *, batch_size: int = 16,
                 workers: int = 4) -> None:
        if not config.benchmark:
            raise ConfigError("BenchmarkTask needs the config class of a registered benchmark "
                              "(alp_eval.configs.BENCHMARK_TASK_CONFIGS)")
        self.config = config
        self.name = config.benchmark
        self.batch_size = batch_size
        self.workers = workers
        self._bench: Benchmark | None = None

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        """Benchmark tasks bring their own data; they do not run on a run's split."""
        raise ConfigError(f"eval task {self.name!r} is a benchmark: run it with `alp eval "
                          f"CHECKPOINT --tasks {self.name}:root=...`, not in eval.tasks of a "
                          "run config")

    def load(self) -> Benchmark:
        """The benchmark from its root (read once per task; the files are stat'ed then)."""
        if self._bench is None:
            self._bench = load_benchmark(self.name, self.config.root, **self.config.loader)
        return self._bench

    def run_benchmark(self, encoder: Any, cache: EmbeddingCache | None = None
                      ) -> list[TaskResult]:
        """Embed the benchmark (through ``cache``) and run every configured probe."""
        cfg = self.config
        bench = self.load()
        rounds = cfg.rounds if cfg.rounds is not None else list(range(len(bench.protocol)))
        bad = [r for r in rounds if r >= len(bench.protocol)]
        if bad:
            raise ConfigError(f"{self.name}.rounds: {bad} do not exist; {bench.protocol_name} "
                              f"has rounds 0..{len(bench.protocol) - 1}")
        keep_frames = bench.task == "sed" or cfg.attention_probe
        emb = load_or_extract(bench, encoder, cache, max_seconds=cfg.max_seconds,
                              keep_frames=keep_frames, batch_size=self.batch_size,
                              workers=self.workers)
        if emb.failed:
            log.warning("%s: %d clips failed to decode and are left out (first: %s)",
                        self.name, len(emb.failed), emb.failed[0]["error"])
        kinds = ["sed"] if bench.task == "sed" else ["linear-probe"]
        if cfg.attention_probe and bench.task != "sed":
            kinds.append("attention-probe")
        return [self._run_kind(bench, emb, kind, rounds) for kind in kinds]

    def _round(self, bench: Benchmark, emb: ClipEmbeddings, kind: str, index: int
               ) -> dict[str, float]:
        cfg = self.config
        seed = cfg.seed + index
        roles = round_roles(bench, index, emb, cfg.linear_probe.max_train, seed)
        if kind == "sed":
            from alp_eval.protocol.sed_probe import run_sed_round

            return run_sed_round(emb, roles, bench.classes, cfg.linear_probe, cfg.sed, seed)
        if kind == "attention-probe":
            return run_attention_round(bench, index, roles, emb, cfg.attention, seed)
        return run_linear_round(bench, index, roles, emb, cfg.linear_probe, seed)

    def _run_kind(self, bench: Benchmark, emb: ClipEmbeddings, kind: str, rounds: list[int]
                  ) -> TaskResult:
        t0 = time.perf_counter()
        per_round = [self._round(bench, emb, kind, index) for index in rounds]
        fit_s = time.perf_counter() - t0
        primary = PRIMARY[bench.task]
        details: dict[str, Any] = {
            "benchmark": self.name, "domain": bench.domain, "task_type": bench.task,
            "probe": kind, "protocol": bench.protocol_name, "rounds": rounds,
            "n_rounds": len(rounds), "per_round": per_round, "n_classes": len(bench.classes),
            "clips": {"listed": bench.listed, "skipped_by_loader": len(bench.skipped),
                      "failed_to_decode": len(emb.failed), "embedded": len(emb.ids)},
            "failed": [{"id": f["id"], "path": f["path"], "reason": f["reason"]}
                       for f in emb.failed[:MAX_FAILED_LISTED]],
            "max_seconds": self.config.max_seconds, "frame_seconds": emb.frame_seconds,
            "extraction": emb.stats, "fit_seconds": round(fit_s, 4),
        }
        if bench.notes:
            details["notes"] = list(bench.notes)
        return TaskResult(f"{self.name}/{kind}", average_rounds(per_round), primary, details)
