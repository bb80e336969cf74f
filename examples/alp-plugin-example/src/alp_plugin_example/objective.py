"""A bidirectional hinge (margin ranking) loss with hardest in-batch negatives (VSE++)."""

from __future__ import annotations

import torch
from torch import nn

from alp_plugin_example.configs import MarginRankingConfig


class MarginRankingLoss(nn.Module):
    """(audio_embeds, text_embeds, clip_ids) -> {"loss": ...}.

    Rows sharing a clip id are positives, never negatives.
    """

    def __init__(self, config: MarginRankingConfig) -> None:
        super().__init__()
        self.margin = config.margin

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor,
                clip_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n = audio_embeds.shape[0]
        ids = clip_ids if clip_ids is not None else torch.arange(n, device=audio_embeds.device)
        sim = audio_embeds @ text_embeds.t()
        positive = ids[:, None] == ids[None, :]
        pos = sim.diagonal()
        neg = sim.masked_fill(positive, float("-inf"))
        a2t = (self.margin - pos + neg.max(dim=1).values).clamp_min(0)
        t2a = (self.margin - pos + neg.max(dim=0).values).clamp_min(0)
        finite = torch.isfinite(a2t) & torch.isfinite(t2a)
        loss = (a2t[finite].sum() + t2a[finite].sum()) / max(int(finite.sum()), 1)
        return {"loss": loss}
