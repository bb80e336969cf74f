"""Registers the built-in objectives through the ALP hooks (cheap: no torch import)."""

from __future__ import annotations

from alp_core import ObjectiveRecord, hookimpl
from alp_objectives.configs import InfoNCEConfig, SigLIPConfig


def _build_infonce(config: InfoNCEConfig, **_: object):
    from alp_objectives.contrastive import InfoNCELoss

    return InfoNCELoss(config)


def _build_siglip(config: SigLIPConfig, **_: object):
    from alp_objectives.siglip import SigLIPLoss

    return SigLIPLoss(config)


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
    ]
