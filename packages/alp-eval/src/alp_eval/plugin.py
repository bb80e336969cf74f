"""Registers the built-in evaluation tasks through the ALP hooks (no torch import)."""

from __future__ import annotations

from alp_core import EvalTaskRecord, hookimpl
from alp_eval.configs import LinearProbeConfig, RetrievalConfig, ZeroShotConfig


@hookimpl
def alp_eval_tasks() -> list[EvalTaskRecord]:
    return [
        EvalTaskRecord(
            "linear-probe", LinearProbeConfig, "alp_eval.probe:LinearProbeTask",
            "logistic-regression probe on mean-pooled frozen features, one per label key",
        ),
        EvalTaskRecord(
            "retrieval", RetrievalConfig, "alp_eval.retrieval:RetrievalTask",
            "audio->text and text->audio retrieval: R@1/5/10 and mAP@10",
        ),
        EvalTaskRecord(
            "zero-shot", ZeroShotConfig, "alp_eval.zeroshot:ZeroShotTask",
            "zero-shot classification per label key from prompt templates (accuracy, macro-F1)",
        ),
    ]
