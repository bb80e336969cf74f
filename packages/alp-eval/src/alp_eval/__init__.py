"""alp-eval: frozen-encoder evaluation (linear probes, retrieval, zero-shot, metrics, reports).

Configs and the context types import without torch; the torch-backed names load on first use,
so registering the plugin stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from alp_eval.configs import LinearProbeConfig, RetrievalConfig, ZeroShotConfig
from alp_eval.context import EvalContext, EvalTask, SplitEmbeddings, TaskResult
from alp_eval.version import __version__

_LAZY = {
    "extract_embeddings": "alp_eval.extract",
    "accuracy": "alp_eval.metrics",
    "macro_f1": "alp_eval.metrics",
    "majority_rate": "alp_eval.metrics",
    "retrieval_metrics": "alp_eval.metrics",
    "LinearProbeTask": "alp_eval.probe",
    "train_linear_probe": "alp_eval.probe",
    "RetrievalTask": "alp_eval.retrieval",
    "build_gallery": "alp_eval.retrieval",
    "build_report": "alp_eval.report",
    "caption_samples": "alp_eval.suite",
    "evaluate": "alp_eval.suite",
    "render_markdown": "alp_eval.report",
    "report_results": "alp_eval.report",
    "write_report": "alp_eval.report",
    "ZeroShotTask": "alp_eval.zeroshot",
    "PretrainedALP": "alp_eval.pretrained",
    "caption_metrics": "alp_eval.captioning",
    "CaptioningTask": "alp_eval.captioning",
    "mean_average_precision": "alp_eval.metrics",
    "train_multilabel_probe": "alp_eval.probe",
    "train_attention_probe": "alp_eval.attention_probe",
    "evaluate_benchmarks": "alp_eval.protocol.run",
    "load_benchmark": "alp_eval.datasets",
    "EmbeddingCache": "alp_eval.cache",
    "class_embeddings": "alp_eval.zeroshot",
}

__all__ = [
    "EvalContext",
    "EvalTask",
    "LinearProbeConfig",
    "RetrievalConfig",
    "SplitEmbeddings",
    "TaskResult",
    "ZeroShotConfig",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alp_eval' has no attribute {name!r}")
