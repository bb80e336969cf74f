"""Registers the built-in objectives through the ALP hooks (cheap: no torch import).

Build context the factories take: ``special_ids`` (the caption tokenizer's ``pad_id``,
``eos_id``, ``mask_id``, ``bos_id``, ``vocab_size``) for anything with a captioning part, and
``plugin_manager`` for the hybrids, which build their terms by name.
"""

from __future__ import annotations

from typing import Any

from alp_core import ObjectiveRecord, hookimpl
from alp_objectives.configs import (
    CaptioningConfig,
    CoCaConfig,
    InfoNCEConfig,
    SigLIPConfig,
    WeightedSumConfig,
)


def _build_infonce(config: InfoNCEConfig):
    from alp_objectives.contrastive import InfoNCELoss

    return InfoNCELoss(config)


def _build_siglip(config: SigLIPConfig):
    from alp_objectives.siglip import SigLIPLoss

    return SigLIPLoss(config)


def _build_captioning(config: CaptioningConfig, special_ids: dict[str, int] | None = None):
    from alp_objectives.hybrid import captioning_loss

    return captioning_loss(config, special_ids)


def _build_coca(config: CoCaConfig, **context: Any):
    from alp_objectives.hybrid import build_coca

    return build_coca(config, **context)


def _build_weighted_sum(config: WeightedSumConfig, **context: Any):
    from alp_objectives.hybrid import build_weighted_sum

    return build_weighted_sum(config, **context)


@hookimpl
def alp_objectives() -> list[ObjectiveRecord]:
    return [
        ObjectiveRecord(
            "infonce", InfoNCEConfig, _build_infonce,
            "symmetric audio-text InfoNCE (fixed or learnable temperature)",
        ),
        ObjectiveRecord(
            "siglip", SigLIPConfig, _build_siglip,
            "pairwise sigmoid audio-text loss, learnable scale and bias (ring-chunked on ranks)",
        ),
        ObjectiveRecord(
            "captioning", CaptioningConfig, _build_captioning,
            "teacher-forced caption cross-entropy, label smoothing, CapPa parallel share",
        ),
        ObjectiveRecord(
            "coca", CoCaConfig, _build_coca,
            "CoCa-style: contrastive on pooled embeddings + captioning on frames, weighted",
        ),
        ObjectiveRecord(
            "weighted-sum", WeightedSumConfig, _build_weighted_sum,
            "weighted sum of registered objectives chosen by name",
        ),
    ]
