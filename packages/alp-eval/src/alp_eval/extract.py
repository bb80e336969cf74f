"""Run a frozen model over a loader once and keep what the eval tasks need.

Duck-typed on purpose: alp-eval may not import alp-models or alp-data. The model needs
``pooled_audio(features, lengths) -> (B, D)`` and may offer
``embed_audio(features, lengths) -> (B, E)`` (its joint audio-text space), and
``pooled_and_embedded_audio(features, lengths) -> (pooled, joint or None)`` to give both from
one pass of its encoder (``AudioTextModel`` does; otherwise each runs the encoder).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

from alp_eval.context import SplitEmbeddings

__all__ = ["extract_embeddings"]


def _batch_captions(batch: Mapping[str, Any], n: int) -> list[tuple[str, ...]]:
    """All captions of each clip: ``all_captions`` if the loader gives them, else the first one."""
    if batch.get("all_captions") is not None:
        caps = [tuple(str(c) for c in clip) for clip in batch["all_captions"]]
    elif batch.get("captions") is not None:
        caps = [(str(c),) if c is not None else () for c in batch["captions"]]
    else:
        caps = [() for _ in range(n)]
    if len(caps) != n:
        raise ValueError(f"batch has {n} ids but {len(caps)} caption entries")
    return caps


def _batch_labels(batch: Mapping[str, Any], n: int) -> list[dict[str, str]]:
    labels = batch.get("labels")
    if labels is None:
        return [{} for _ in range(n)]
    if len(labels) != n:
        raise ValueError(f"batch has {n} ids but {len(labels)} label entries")
    return [{str(k): str(v) for k, v in (clip or {}).items()} for clip in labels]


def extract_embeddings(
    model: Any, loader: Iterable[Mapping[str, Any]], device: Any = "cpu"
) -> SplitEmbeddings:
    """Pooled (and, if the model has them, joint-space) audio embeddings of every clip.

    Batches are collated dicts with ``ids``, ``features``, ``feature_lengths``, ``captions`` or
    ``all_captions`` and ``labels``; empty batches are skipped. Runs in ``model.eval()`` under
    ``torch.inference_mode`` and restores the model's previous train/eval mode. The returned
    tensors are float32 on the CPU and ordinary (not inference) tensors.
    """
    embed = getattr(model, "embed_audio", None)
    both = getattr(model, "pooled_and_embedded_audio", None)  # one encoder pass for the two
    was_training = bool(getattr(model, "training", False))
    ids: list[str] = []
    captions: list[tuple[str, ...]] = []
    labels: list[dict[str, str]] = []
    pooled: list[Tensor] = []
    audio: list[Tensor] = []
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.inference_mode():
            for batch in loader:
                batch_ids = [str(i) for i in batch["ids"]]
                if not batch_ids:
                    continue
                features = torch.as_tensor(batch["features"]).to(device)
                lengths = torch.as_tensor(batch["feature_lengths"]).to(device)
                if callable(both):
                    mean, joint = both(features, lengths)
                else:
                    mean = model.pooled_audio(features, lengths)
                    joint = embed(features, lengths) if callable(embed) else None
                pooled.append(mean.float().cpu())
                if joint is not None:
                    audio.append(joint.float().cpu())
                captions.extend(_batch_captions(batch, len(batch_ids)))
                labels.extend(_batch_labels(batch, len(batch_ids)))
                ids.extend(batch_ids)
    finally:
        if hasattr(model, "train"):
            model.train(was_training)
    pooled_all = torch.cat(pooled).clone() if pooled else torch.zeros(0, 0)
    if audio and len(audio) != len(pooled):
        raise ValueError("model.embed_audio returned None for some batches but not for others")
    audio_all = torch.cat(audio).clone() if audio else None
    return SplitEmbeddings(ids, pooled_all, audio_all, captions, labels)
