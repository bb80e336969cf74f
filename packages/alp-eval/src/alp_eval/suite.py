"""The evaluation suite of a run: embed the splits once with the frozen model, run every task.

Duck-typed like :mod:`alp_eval.extract`: the model needs ``pooled_audio``, may offer
``embed_audio``/``embed_text`` with a ``tokenizer`` (joint space) and ``generate_captions``
(a caption decoder; a model whose ``caption_decoder`` is None has none). Bad clips met while
embedding are passed to ``on_skipped`` (the run's bad-clip budget); tasks that caption the test
split read it again, lazily, without counting its bad clips twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from alp_eval.context import EvalContext, TaskResult
from alp_eval.extract import extract_embeddings

__all__ = ["caption_samples", "evaluate", "greedy_captions", "has_caption_decoder", "skipping"]


def skipping(loader: Iterable[Mapping[str, Any]], on_skipped: Callable[[list[Any]], None]
             ) -> Iterator[Mapping[str, Any]]:
    """Pass each batch's ``skipped`` clips to ``on_skipped``, then the batch on."""
    for batch in loader:
        on_skipped(list(batch.get("skipped", [])))
        yield batch


def has_caption_decoder(model: Any) -> bool:
    """Whether ``model`` can caption: a ``generate_captions`` method and a decoder that is set."""
    return (callable(getattr(model, "generate_captions", None))
            and getattr(model, "caption_decoder", True) is not None)


def evaluate(model: Any, tasks: list[Any], loaders: Mapping[str, Iterable[Mapping[str, Any]]],
             *, device: torch.device, seed: int, batch_size: int,
             on_skipped: Callable[[list[Any]], None] = lambda clips: None,
             notes: dict[str, str] | None = None) -> list[TaskResult]:
    """Embed the ``train`` and ``test`` splits with the frozen model and run every task.

    A model with a caption decoder also gives the tasks ``generate_captions`` over the test
    loader (run only if a task asks). Tasks that measure nothing put their reason into
    ``notes`` (task name -> reason) when it is given.
    """
    model.to(device).eval()
    # in clip-id order: the probes and retrieval give the same results for the same clips
    # whatever order the loader has (generate_captions still takes the loader's first clips)
    train = extract_embeddings(model, skipping(loaders["train"], on_skipped),
                               device=device).sorted_by_id()
    test = extract_embeddings(model, skipping(loaders["test"], on_skipped),
                              device=device).sorted_by_id()
    tokenizer = getattr(model, "tokenizer", None)

    @torch.inference_mode()
    def embed_text(captions: list[str]) -> torch.Tensor:
        chunks = []
        for i in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[i:i + batch_size])
            chunks.append(model.embed_text(tokens["input_ids"].to(device),
                                           tokens["attention_mask"].to(device)).cpu())
        return torch.cat(chunks)

    def generate_captions(max_clips: int | None = None, **options: Any) -> dict[str, str]:
        return {c["id"]: c["generated"] for c in greedy_captions(
            model, loaders["test"], device, max_clips=max_clips, **options)}

    # no text tower (captioning only): no joint space to retrieve in
    ctx = EvalContext(train=train, test=test, seed=seed,
                      embed_text=embed_text if tokenizer is not None else None,
                      generate_captions=generate_captions if has_caption_decoder(model) else None)
    results = [result for task in tasks for result in task.run(ctx)]
    if notes is not None:
        notes.update(ctx.notes)
    return results


@torch.inference_mode()
def greedy_captions(model: Any, loader: Iterable[Mapping[str, Any]], device: torch.device, *,
                    max_clips: int | None = None, **options: Any) -> list[dict[str, str]]:
    """Captions of the readable clips of ``loader`` (the first ``max_clips``; all when None),
    one batch at a time, each ``{"id", "reference", "generated"}`` (``reference``: the batch's
    caption of the clip). ``options`` (``max_tokens``, ``num_beams``) go to
    ``model.generate_captions``, which decodes greedily by default. Bad clips are not counted
    here: the loader's ``skipped`` entries are ignored."""
    model.to(device).eval()
    out: list[dict[str, str]] = []
    for batch in loader:
        if max_clips is not None and len(out) >= max_clips:
            break
        n = len(batch["ids"]) if max_clips is None else min(max_clips - len(out),
                                                            len(batch["ids"]))
        if n == 0:  # every clip of the batch was unreadable
            continue
        features = torch.as_tensor(batch["features"][:n]).to(device)
        lengths = torch.as_tensor(batch["feature_lengths"][:n]).to(device)
        generated = model.generate_captions(features, lengths, **options)
        refs = batch.get("captions") or [""] * n
        out += [{"id": str(i), "reference": "" if ref is None else str(ref), "generated": gen}
                for i, ref, gen in zip(batch["ids"][:n], refs[:n], generated)]
    return out


def caption_samples(model: Any, loader: Iterable[Mapping[str, Any]], device: torch.device,
                    count: int = 4) -> list[dict[str, str]]:
    """Greedy captions of the first ``count`` readable clips, beside their references."""
    return greedy_captions(model, loader, device, max_clips=count)
