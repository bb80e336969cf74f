"""Symmetric audio-text InfoNCE (CLIP/CLAP form) with the paper's options.

Each rank scores its local rows against the global batch (memory local x global, never
global x global); positives are found by clip id, so several captions of one clip in a batch
are all positives rather than false negatives.

Ranks may hold different row counts B_r (N = sum B_r, W ranks; duration-bucketed batches
differ at almost every step). Each rank's loss is the mean over its own rows weighted by
W * B_r / N, so the mean over the ranks, which DDP's gradient average takes, is the loss over
all N rows and its gradient the one-big-batch gradient (with equal B_r the weight is 1; the
metrics are weighted alike, so their mean over ranks is the global one). A rank with 0 rows
returns a zero loss that is still joined to the gathers, so its backward takes part in the
gradient exchange.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from alp_objectives.base import (
    ContrastiveObjective,
    accept_0dim,
    full_precision,
    scalar_parameter,
    upcast,
)
from alp_objectives.configs import InfoNCEConfig
from alp_objectives.distributed import (
    gather_ids,
    gather_sizes,
    gather_with_grad,
    row_offset,
    world_info,
)
from alp_objectives.outputs import LossOutput
from alp_objectives.validation import check_embeddings, check_ids, check_rank_embeddings


def _mean_rows(values: torch.Tensor) -> torch.Tensor:
    """Mean of per-row values; an exact zero (still in the graph) when there are no rows.

    The empty case is a rank with no rows of a distributed batch: its loss must be a number
    and must stay joined to the gathered tensors so that its backward runs the collectives.
    """
    return values.mean() if values.shape[0] else values.sum()


def embedding_regularizer(embeds: torch.Tensor) -> torch.Tensor:
    """The paper's regulariser mean(|e|) / ||e||, averaged over the batch."""
    return _mean_rows(embeds.abs().mean(dim=-1) / embeds.norm(dim=-1).clamp_min(1e-12))


def _positive_mean_cross_entropy(
    logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """Mean over rows of -(1/|P_i|) sum_{j in P_i} log_softmax(logits_i)_j.

    Written as logsumexp(l_i) - mean_{j in P_i} l_ij with the positives as index lists, so that
    autograd keeps one (rows, columns) matrix, not a dense target matrix and a product beside it.
    """
    positive_sum = logits.new_zeros(logits.shape[0]).index_add(0, rows, logits[rows, cols])
    return _mean_rows(torch.logsumexp(logits, dim=1) - positive_sum / counts)


class InfoNCELoss(ContrastiveObjective):
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
            self.log_logit_scale: nn.Parameter | None = scalar_parameter(init)
        else:  # a Python float: exact in any dtype the embeddings come in
            self.log_logit_scale = None
            self._fixed_scale = math.exp(min(init, self._max_log_scale))

    @property
    def rank_weighted(self) -> bool:
        return self.config.gather

    def logit_scale(self) -> torch.Tensor:
        """1 / temperature (clamped to ``max_logit_scale``)."""
        if self.log_logit_scale is None:
            return torch.tensor(self._fixed_scale, dtype=torch.float64)
        return self.log_logit_scale[0].clamp(max=self._max_log_scale).exp()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        accept_0dim(state_dict, prefix, ("log_logit_scale",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        audio_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        clip_ids: torch.Tensor | None = None,
    ) -> LossOutput:
        # logits and loss in float32 even under bf16/fp16 autocast (see full_precision)
        with full_precision(audio_embeds.device):
            return self._loss(upcast(audio_embeds), upcast(text_embeds), clip_ids)

    def _loss(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor,
              clip_ids: torch.Tensor | None) -> LossOutput:
        _, world = world_info()
        distributed = self.config.gather and world > 1
        if distributed:  # a rank may have no rows; it still joins the gathers
            check_rank_embeddings(audio_embeds=audio_embeds, text_embeds=text_embeds)
        else:
            check_embeddings(audio_embeds=audio_embeds, text_embeds=text_embeds)
        batch = audio_embeds.shape[0]
        sizes = gather_sizes(batch, audio_embeds.device) if distributed else [batch]
        if clip_ids is None:  # one pair per clip: the diagonal, offset past the lower ranks' rows
            offset = row_offset(sizes) if distributed else 0
            clip_ids = torch.arange(offset, offset + batch, device=audio_embeds.device)
        check_ids(clip_ids, batch)

        if distributed:
            all_audio = gather_with_grad(audio_embeds, sizes)
            all_text = gather_with_grad(text_embeds, sizes)
            all_ids = gather_ids(clip_ids, sizes)
        else:
            all_audio, all_text, all_ids = audio_embeds, text_embeds, clip_ids

        scale = self.logit_scale().to(audio_embeds)
        # local rows x global columns; the scale goes on the (small) embeddings, not the logits
        logits_a2t = (scale * audio_embeds) @ all_text.t()
        logits_t2a = (scale * text_embeds) @ all_audio.t()
        positives = clip_ids[:, None] == all_ids[None, :]  # every row holds its own pair
        rows, cols = positives.nonzero(as_tuple=True)
        counts = positives.sum(dim=1).to(logits_a2t.dtype)
        loss_a2t = _positive_mean_cross_entropy(logits_a2t, rows, cols, counts)
        loss_t2a = _positive_mean_cross_entropy(logits_t2a, rows, cols, counts)
        loss = 0.5 * (loss_a2t + loss_t2a)

        values = {"loss_a2t": loss_a2t, "loss_t2a": loss_t2a, "logit_scale": scale}
        if self.config.embedding_regularizer > 0:
            reg = embedding_regularizer(audio_embeds) + embedding_regularizer(text_embeds)
            loss = loss + self.config.embedding_regularizer * reg
            values["embedding_reg"] = reg
        with torch.no_grad():
            hit = positives.gather(1, logits_a2t.argmax(dim=1, keepdim=True)).squeeze(1)
            values["a2t_top1"] = hit.float().mean() if batch else hit.float().sum()
        if distributed and batch * len(sizes) != sum(sizes):
            # ranks with different row counts: DDP averages the ranks' losses, so each rank's
            # row mean is weighted by W * B_r / N, which makes the rank average the mean over
            # all N rows (and its gradient the one-big-batch gradient, not one over-weighting
            # the rows of the rank with fewer)
            weight = len(sizes) * batch / sum(sizes)
            loss = loss * weight
            values = {k: v if k == "logit_scale" else v * weight for k, v in values.items()}
        values["loss"] = loss
        with torch.no_grad():  # one device read for all the metrics (each .item() is one)
            numbers = torch.stack([v.detach().double().reshape(()) for v in values.values()])
        metrics = dict(zip(values, numbers.tolist()))
        return LossOutput(loss=loss, metrics=metrics)
