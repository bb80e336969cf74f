"""The evaluation suite of a run: embed the splits once with the frozen model, run every task.

Duck-typed like :mod:`alp_eval.extract`: the model needs ``pooled_audio``, may offer
``embed_audio``/``embed_text`` with a ``tokenizer`` (joint space) and ``generate_captions``.
Bad clips met while embedding are passed to ``on_skipped`` (the run's bad-clip budget).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from alp_eval.context import EvalContext, TaskResult
from alp_eval.extract import extract_embeddings

__all__ = ["caption_samples", "evaluate", "skipping"]


def skipping(loader: Iterable[Mapping[str, Any]], on_skipped: Callable[[list[Any]], None]
             ) -> Iterator[Mapping[str, Any]]:
    """Pass each batch's ``skipped`` clips to ``on_skipped``, then the batch on."""
    for batch in loader:
        on_skipped(list(batch.get("skipped", [])))
        yield batch


def evaluate(model: Any, tasks: list[Any], loaders: Mapping[str, Iterable[Mapping[str, Any]]],
             *, device: torch.device, seed: int, batch_size: int,
             on_skipped: Callable[[list[Any]], None] = lambda clips: None) -> list[TaskResult]:
    """Embed the ``train`` and ``test`` splits with the frozen model and run every task."""
    model.to(device).eval()
    train = extract_embeddings(model, skipping(loaders["train"], on_skipped), device=device)
    test = extract_embeddings(model, skipping(loaders["test"], on_skipped), device=device)
    tokenizer = getattr(model, "tokenizer", None)

    @torch.inference_mode()
    def embed_text(captions: list[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[i:i + batch_size])
            chunks.append(model.embed_text(tokens["input_ids"].to(device),
                                           tokens["attention_mask"].to(device)).cpu())
        return torch.cat(chunks)

    # no text tower (captioning only): no joint space to retrieve in
    ctx = EvalContext(train=train, test=test, seed=seed,
                      embed_text=embed_text if tokenizer is not None else None)
    return [result for task in tasks for result in task.run(ctx)]


@torch.inference_mode()
def caption_samples(model: Any, loader: Iterable[Mapping[str, Any]], device: torch.device,
                    count: int = 4) -> list[dict[str, str]]:
    """Greedy captions of the first ``count`` readable clips, beside their references."""
    model.to(device).eval()
    for batch in loader:
        if not batch["ids"]:
            continue
        n = min(count, len(batch["ids"]))
        generated = model.generate_captions(batch["features"][:n].to(device),
                                            batch["feature_lengths"][:n].to(device))
        return [{"id": i, "reference": ref, "generated": gen}
                for i, ref, gen in zip(batch["ids"][:n], batch["captions"][:n], generated)]
    return []
