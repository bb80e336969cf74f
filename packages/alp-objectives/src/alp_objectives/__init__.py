"""alp-objectives: audio-language training objectives as plain ``torch.nn.Module``s.

Needs only torch (and the light alp-core); usable in any training loop::

    from alp_objectives import InfoNCELoss
    out = InfoNCELoss()(audio_embeds, text_embeds)
    out.loss.backward()

Attributes are imported lazily so that registering the plugin never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from alp_objectives.version import __version__

_LAZY = {
    "MODEL_OUTPUTS": "alp_objectives.base",
    "ContrastiveObjective": "alp_objectives.base",
    "Objective": "alp_objectives.base",
    "STEP_KEYS": "alp_objectives.base",
    "as_objective": "alp_objectives.base",
    "accept_0dim": "alp_objectives.base",
    "scalar_parameter": "alp_objectives.base",
    "to_loss_output": "alp_objectives.base",
    "CoCaConfig": "alp_objectives.configs",
    "ObjectiveTerm": "alp_objectives.configs",
    "WeightedSumConfig": "alp_objectives.configs",
    "WeightedSumLoss": "alp_objectives.hybrid",
    "build_coca": "alp_objectives.hybrid",
    "build_weighted_sum": "alp_objectives.hybrid",
    "captioning_loss": "alp_objectives.hybrid",
    "CaptioningConfig": "alp_objectives.configs",
    "CaptioningLoss": "alp_objectives.captioning",
    "DecoderInputs": "alp_objectives.captioning",
    "InfoNCEConfig": "alp_objectives.configs",
    "InfoNCELoss": "alp_objectives.contrastive",
    "LossOutput": "alp_objectives.outputs",
    "SigLIPConfig": "alp_objectives.configs",
    "SigLIPLoss": "alp_objectives.siglip",
    "embedding_regularizer": "alp_objectives.contrastive",
}

__all__ = [*sorted(_LAZY), "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alp_objectives' has no attribute {name!r}")
