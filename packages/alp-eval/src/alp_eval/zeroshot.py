"""Zero-shot classification in the joint audio-text space, from prompt templates in the config.

For each label key, every class name fills every template; the prompt embeddings are
L2-normalised, averaged over the templates and normalised again (CLIP's prompt ensemble), and
each test clip is given the class whose embedding has the highest cosine with its audio
embedding. The exact prompts go into the result's details, so the report shows them.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alp_eval.configs import ZeroShotConfig
from alp_eval.context import EvalContext, TaskResult
from alp_eval.metrics import accuracy, macro_f1

__all__ = ["ZeroShotConfig", "ZeroShotTask", "class_embeddings"]

log = logging.getLogger(__name__)


def _embed(ctx: EvalContext, texts: list[str], batch_size: int) -> Tensor:
    """``ctx.embed_text`` over ``texts`` in batches, as one float (len(texts), dim) tensor."""
    assert ctx.embed_text is not None
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        emb = torch.as_tensor(ctx.embed_text(batch))
        if emb.dim() != 2 or emb.shape[0] != len(batch):
            raise ValueError(
                f"embed_text returned shape {tuple(emb.shape)} for {len(batch)} prompts; "
                "expected (prompts, dim)"
            )
        chunks.append(emb.detach().float().cpu())
    return torch.cat(chunks)


def class_embeddings(
    ctx: EvalContext, names: list[str], templates: tuple[str, ...], batch_size: int = 256
) -> tuple[Tensor, list[list[str]]]:
    """The (classes, dim) prompt-ensemble embedding of each class name, and its prompts.

    Every prompt embedding is L2-normalised before the mean over templates, so no template
    outweighs the others by its norm; the mean is normalised again.
    """
    prompts = [[template.format(label=name) for template in templates] for name in names]
    flat = [prompt for row in prompts for prompt in row]
    emb = F.normalize(_embed(ctx, flat, batch_size), dim=-1)
    emb = emb.reshape(len(names), len(templates), -1).mean(1)
    return F.normalize(emb, dim=-1), prompts


class ZeroShotTask:
    """Classify each test clip among the classes of every label key, without training.

    Needs the joint space: ``ctx.test.audio_embeds`` and ``ctx.embed_text``; without them it
    returns no result and logs why (as retrieval does). The candidate classes of a key are its
    values in the train and test splits together; clips without the key are left out. A key
    with fewer than two classes or no test clip is skipped with a logged reason. Metrics per
    key: ``accuracy`` (primary) and ``macro_f1``.
    """

    name = "zero-shot"

    def __init__(self, config: ZeroShotConfig | None = None) -> None:
        self.config = config or ZeroShotConfig()

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        """Zero-shot classify every configured (or discovered) label key of ``ctx.test``."""
        if ctx.embed_text is None or ctx.test.audio_embeds is None:
            log.warning(
                "zero-shot skipped: the model has no joint audio-text embedding space "
                "(no text tower), so there is nothing to match the prompts against"
            )
            return []
        keys = self.config.tasks
        if keys is None:
            keys = sorted({key for labels in ctx.test.labels for key in labels})
        audio = F.normalize(ctx.test.audio_embeds.detach().float().cpu(), dim=-1)
        results = []
        for key in keys:
            result = self._run_key(ctx, audio, key)
            if result is not None:
                results.append(result)
        return results

    def _run_key(self, ctx: EvalContext, audio: Tensor, key: str) -> TaskResult | None:
        test_idx = [i for i, labels in enumerate(ctx.test.labels) if key in labels]
        test_values = [str(ctx.test.labels[i][key]) for i in test_idx]
        train_values = {str(labels[key]) for labels in ctx.train.labels if key in labels}
        classes = sorted(train_values | set(test_values))
        reason = None
        if not test_idx:
            reason = "no test clip carries it"
        elif len(classes) < 2:
            reason = f"it has {len(classes)} class(es) (need 2)"
        if reason is not None:
            log.warning("zero-shot/%s skipped: %s", key, reason)
            return None
        templates = self.config.templates_for(key)
        names = [self.config.class_name(key, raw) for raw in classes]
        text, prompts = class_embeddings(ctx, names, templates, self.config.text_batch_size)
        if text.shape[1] != audio.shape[1]:
            raise ValueError(
                f"audio embeddings have dim {audio.shape[1]} but text embeddings {text.shape[1]}"
            )
        # argmax keeps the first (lowest sorted class) among equal scores: deterministic ties
        pred = (audio[test_idx] @ text.T).argmax(1)
        class_id = {c: i for i, c in enumerate(classes)}
        target = torch.tensor([class_id[v] for v in test_values])
        counts = torch.bincount(target, minlength=len(classes))
        details: dict[str, Any] = {
            "n_test": len(test_idx),
            "n_classes": len(classes),
            "chance": 1.0 / len(classes),
            "majority": float(counts.max()) / len(test_idx),
            "templates": list(templates),
            "class_names": dict(zip(classes, names)),
            "prompts": {raw: row for raw, row in zip(classes, prompts)},
        }
        metrics = {"accuracy": accuracy(pred, target), "macro_f1": macro_f1(pred, target)}
        return TaskResult(f"{self.name}/{key}", metrics, primary="accuracy", details=details)
