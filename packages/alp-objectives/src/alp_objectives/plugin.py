"""Registers the built-in objectives through the ALP hooks (cheap: no torch import)."""

from __future__ import annotations

from alp_core import ObjectiveRecord, hookimpl
from alp_objectives.configs import InfoNCEConfig


def _build_infonce(config: InfoNCEConfig, **_: object):
    from alp_objectives.contrastive import InfoNCELoss

    return InfoNCELoss(config)


@hookimpl
def alp_objectives() -> list[ObjectiveRecord]:
    return [
        ObjectiveRecord(
            "infonce", InfoNCEConfig, _build_infonce,
            "symmetric audio-text InfoNCE (fixed or learnable temperature)",
        ),
    ]
