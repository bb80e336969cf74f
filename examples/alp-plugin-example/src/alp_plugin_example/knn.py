"""k-nearest-neighbour probe: cosine k-NN accuracy of the frozen, mean-pooled encoder output."""

from __future__ import annotations

from collections import Counter

import torch.nn.functional as F

from alp_eval.context import EvalContext, TaskResult
from alp_plugin_example.configs import KNNProbeConfig


class KNNProbe:
    def __init__(self, config: KNNProbeConfig) -> None:
        self.config = config

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        keys = self.config.tasks or sorted({k for lab in ctx.train.labels for k in lab})
        results = []
        for key in keys:
            tr = [i for i, lab in enumerate(ctx.train.labels) if key in lab]
            te = [i for i, lab in enumerate(ctx.test.labels) if key in lab]
            if not tr or not te:
                continue
            xtr = F.normalize(ctx.train.pooled[tr].float(), dim=-1)
            xte = F.normalize(ctx.test.pooled[te].float(), dim=-1)
            k = min(self.config.k, len(tr))
            nearest = (xte @ xtr.t()).topk(k, dim=1).indices
            ytr = [ctx.train.labels[i][key] for i in tr]
            correct = 0
            for row, i in zip(nearest.tolist(), te):
                vote = Counter(ytr[j] for j in row).most_common(1)[0][0]
                correct += vote == ctx.test.labels[i][key]
            results.append(TaskResult(f"knn/{key}", {"accuracy": correct / len(te)}, "accuracy",
                                      {"k": k, "n_train": len(tr), "n_test": len(te)}))
        return results
