"""Audio-text retrieval on the test split: audio->text and text->audio R@k and mAP@k."""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from alp_eval.configs import RetrievalConfig
from alp_eval.context import EvalContext, SplitEmbeddings, TaskResult
from alp_eval.metrics import retrieval_metrics

__all__ = ["RetrievalConfig", "RetrievalTask", "build_gallery", "retrieval_metrics"]

log = logging.getLogger(__name__)


def build_gallery(captions: list[tuple[str, ...]], dedupe: bool = True) -> tuple[list[str], Tensor]:
    """The caption gallery of a split and its (num_clips, num_texts) clip-caption relevance.

    With ``dedupe`` every distinct caption string is one gallery item, relevant to every clip
    that has it; otherwise each caption occurrence is its own item, relevant to its clip only.
    """
    texts, relevant, _ = _gallery(captions, dedupe)
    return texts, relevant


def _gallery(captions: list[tuple[str, ...]], dedupe: bool
             ) -> tuple[list[str], Tensor, list[tuple[int, int]]]:
    """:func:`build_gallery` and each caption occurrence's ``(clip, gallery column)``."""
    texts: list[str] = []
    index: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for clip, caps in enumerate(captions):
        for text in caps:
            if dedupe and text in index:
                col = index[text]
            else:
                col = len(texts)
                texts.append(text)
                index.setdefault(text, col)
            pairs.append((clip, col))
    relevant = torch.zeros(len(captions), len(texts), dtype=torch.bool)
    if pairs:
        index_tensor = torch.tensor(pairs)
        relevant[index_tensor[:, 0], index_tensor[:, 1]] = True
    return texts, relevant, pairs


class RetrievalTask:
    """Rank every test caption for each test clip (a2t) and every test clip for each caption (t2a).

    Needs the model's joint space: ``ctx.test.audio_embeds`` and ``ctx.embed_text``; without
    them it returns no result and logs why. Scores are cosine similarities. Text->audio has one
    query per caption occurrence with only its own clip relevant; ``dedupe_captions`` merges
    identical strings in the audio->text gallery only. Clips without a caption are gallery
    items for t2a but not a2t queries. The primary metric ``mean_R`` is the
    mean of every R@k of both directions; ``mean_R@1`` averages the two R@1.
    """

    name = "retrieval"

    def __init__(self, config: RetrievalConfig | None = None) -> None:
        self.config = config or RetrievalConfig()

    def _embed_texts(self, ctx: EvalContext, texts: list[str]) -> Tensor:
        assert ctx.embed_text is not None
        size = self.config.text_batch_size
        chunks = []
        for start in range(0, len(texts), size):
            emb = torch.as_tensor(ctx.embed_text(texts[start : start + size]))
            if emb.dim() != 2 or emb.shape[0] != len(texts[start : start + size]):
                raise ValueError(
                    f"embed_text returned shape {tuple(emb.shape)} for "
                    f"{len(texts[start : start + size])} captions; expected (captions, dim)"
                )
            chunks.append(emb.detach().float().cpu())
        return torch.cat(chunks)

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        """Measure both retrieval directions on ``ctx.test``."""
        test: SplitEmbeddings = ctx.test
        if ctx.embed_text is None or test.audio_embeds is None:
            log.warning("retrieval skipped: the model has no joint audio-text embedding space")
            return []
        texts, relevant, pairs = _gallery(test.captions, self.config.dedupe_captions)
        has_caption = relevant.any(1)
        if not texts or int(has_caption.sum()) == 0:
            log.warning("retrieval skipped: the test split has no captions")
            return []
        audio = F.normalize(test.audio_embeds.detach().float().cpu(), dim=-1)
        text = F.normalize(self._embed_texts(ctx, texts), dim=-1)
        if audio.shape[1] != text.shape[1]:
            raise ValueError(
                f"audio embeddings have dim {audio.shape[1]} but text embeddings {text.shape[1]}"
            )
        similarity = audio @ text.T
        ks, map_k = self.config.ks, self.config.map_k
        a2t = retrieval_metrics(similarity[has_caption], relevant[has_caption], ks, map_k)
        # text->audio: one query per caption occurrence, only its own clip relevant (the
        # AudioCaps/Clotho protocol), whether or not the gallery merged identical strings
        clips, cols = [c for c, _ in pairs], [t for _, t in pairs]
        own = torch.zeros(len(clips), len(test), dtype=torch.bool)
        own[torch.arange(len(clips)), torch.tensor(clips)] = True
        t2a = retrieval_metrics(similarity.T[torch.tensor(cols)], own, ks, map_k)
        metrics = {f"a2t_{k}": v for k, v in a2t.items()}
        metrics.update({f"t2a_{k}": v for k, v in t2a.items()})
        recalls = [metrics[f"{d}_R@{k}"] for d in ("a2t", "t2a") for k in ks]
        if 1 in ks:
            metrics["mean_R@1"] = (metrics["a2t_R@1"] + metrics["t2a_R@1"]) / 2
        metrics["mean_R"] = sum(recalls) / len(recalls)
        details = {
            "n_clips": len(test),
            "n_a2t_queries": int(has_caption.sum()),
            "n_t2a_queries": len(clips),
            "n_gallery_texts": len(texts),
            "n_captions": sum(len(c) for c in test.captions),
            "dedupe_captions": self.config.dedupe_captions,
        }
        return [TaskResult(self.name, metrics, primary="mean_R", details=details)]
