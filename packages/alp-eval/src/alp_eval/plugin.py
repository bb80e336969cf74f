"""Registers the built-in evaluation tasks through the ALP hooks (no torch import).

Two kinds of eval task share the ``alp_eval_tasks`` hook:

* run-split tasks (``linear-probe``, ``retrieval``, ``zero-shot``): ``factory(config)`` has
  ``run(ctx: EvalContext)``; ``alp run`` runs them on the held-out split of its own corpus;
* benchmark tasks (``esc50``, ..., ``desed``): their config class subclasses
  :class:`~alp_eval.configs.BenchmarkTaskConfig`, and ``factory(config)`` has
  ``run_benchmark(encoder, cache)`` (:class:`alp_eval.protocol.BenchmarkTask`); ``alp eval``
  runs them on a checkpoint. A plugin registers its own benchmark the same way.
"""

from __future__ import annotations

from alp_core import EvalTaskRecord, hookimpl
from alp_eval.captioning import CaptioningConfig
from alp_eval.configs import (
    BENCHMARK_TASK_CONFIGS,
    BENCHMARK_TASKS,
    LinearProbeConfig,
    RetrievalConfig,
    ZeroShotConfig,
)
from alp_eval.protocol.retrieval_sets import RETRIEVAL_SET_CONFIGS, RETRIEVAL_SETS

BENCHMARK_FACTORY = "alp_eval.protocol.task:BenchmarkTask"


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
        EvalTaskRecord(
            "captioning", CaptioningConfig, "alp_eval.captioning:CaptioningTask",
            "greedy captions of the test clips vs their references: CIDEr-D, BLEU-1..4, "
            "ROUGE-L (+METEOR/SPICE/SPIDEr where Java allows); alp-eval[captioning]",
        ),
        *(
            EvalTaskRecord(name, BENCHMARK_TASK_CONFIGS[name], BENCHMARK_FACTORY,
                           f"alp eval benchmark ({domain}): {description}")
            for name, (domain, _task, description) in BENCHMARK_TASKS.items()
        ),
        *(
            EvalTaskRecord(name, RETRIEVAL_SET_CONFIGS[name],
                           "alp_eval.protocol.retrieval_sets:RetrievalSetTask",
                           f"alp eval retrieval ({domain}): {description}")
            for name, (_recipe, domain, description) in RETRIEVAL_SETS.items()
        ),
    ]
