"""Symmetric audio-text InfoNCE (CLIP/CLAP form) with the paper's options.

Each rank scores its local rows against the global batch (memory local x global, never
global x global); positives are found by clip id, so several captions of one clip in a batch
are all positives rather than false negatives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alp_objectives.configs import InfoNCEConfig
from alp_objectives.distributed import gather_ids, gather_with_grad, world_info
from alp_objectives.outputs import LossOutput
from alp_objectives.validation import check_embeddings, check_ids


def embedding_regularizer(embeds: torch.Tensor) -> torch.Tensor:
    """The paper's regulariser mean(|e|) / ||e||, averaged over the batch."""
    return (embeds.abs().mean(dim=-1) / embeds.norm(dim=-1).clamp_min(1e-12)).mean()


def soft_positive_targets(query_ids: torch.Tensor, key_ids: torch.Tensor) -> torch.Tensor:
    """Row-normalised (Q, K) target matrix: uniform over the keys sharing the query's clip id."""
    positives = (query_ids[:, None] == key_ids[None, :]).to(torch.get_default_dtype())
    return positives / positives.sum(dim=1, keepdim=True)


class InfoNCELoss(nn.Module):
    """Symmetric InfoNCE over L2-normalised audio and text embeddings.

    Input: ``audio_embeds`` (B, E) and ``text_embeds`` (B, E), row i of each from the same
    pair, and optionally ``clip_ids`` (B,) int64 marking rows that share a clip. Output:
    :class:`LossOutput` with the mean of the audio->text and text->audio cross-entropies.
    """

    def __init__(self, config: InfoNCEConfig | None = None) -> None:
        super().__init__()
        self.config = config or InfoNCEConfig()
        self._max_log_scale = math.log(self.config.max_logit_scale)
        init = math.log(1.0 / self.config.temperature)
        if self.config.learnable_temperature:
            self.log_logit_scale = nn.Parameter(torch.tensor(init))
        else:  # a Python float: exact in any dtype the embeddings come in
            self.log_logit_scale = None
            self._fixed_scale = math.exp(min(init, self._max_log_scale))

    def logit_scale(self) -> torch.Tensor:
        """1 / temperature (clamped to ``max_logit_scale``)."""
        if self.log_logit_scale is None:
            return torch.tensor(self._fixed_scale, dtype=torch.float64)
        return self.log_logit_scale.clamp(max=self._max_log_scale).exp()

    def forward(
        self,
        audio_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        clip_ids: torch.Tensor | None = None,
    ) -> LossOutput:
        check_embeddings(audio_embeds=audio_embeds, text_embeds=text_embeds)
        batch = audio_embeds.shape[0]
        rank, world = world_info()
        distributed = self.config.gather and world > 1
        if clip_ids is None:  # one pair per clip: the diagonal, offset so ranks never collide
            clip_ids = torch.arange(batch, device=audio_embeds.device) + rank * batch
        check_ids(clip_ids, batch)

        if distributed:
            all_audio = gather_with_grad(audio_embeds)
            all_text = gather_with_grad(text_embeds)
            all_ids = gather_ids(clip_ids)
        else:
            all_audio, all_text, all_ids = audio_embeds, text_embeds, clip_ids

        scale = self.logit_scale().to(audio_embeds)
        logits_a2t = scale * audio_embeds @ all_text.t()  # local rows x global columns
        logits_t2a = scale * text_embeds @ all_audio.t()
        targets = soft_positive_targets(clip_ids, all_ids).to(logits_a2t.dtype)
        loss_a2t = -(targets * F.log_softmax(logits_a2t, dim=1)).sum(dim=1).mean()
        loss_t2a = -(targets * F.log_softmax(logits_t2a, dim=1)).sum(dim=1).mean()
        loss = 0.5 * (loss_a2t + loss_t2a)

        metrics = {"loss_a2t": loss_a2t.item(), "loss_t2a": loss_t2a.item(),
                   "logit_scale": scale.item()}
        if self.config.embedding_regularizer > 0:
            reg = embedding_regularizer(audio_embeds) + embedding_regularizer(text_embeds)
            loss = loss + self.config.embedding_regularizer * reg
            metrics["embedding_reg"] = reg.item()
        with torch.no_grad():
            hit = targets.gather(1, logits_a2t.argmax(dim=1, keepdim=True)).squeeze(1) > 0
            metrics["a2t_top1"] = hit.float().mean().item()
        metrics["loss"] = loss.item()
        return LossOutput(loss=loss, metrics=metrics)
