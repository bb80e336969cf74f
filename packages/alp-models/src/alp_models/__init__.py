"""alp-models: audio/text encoders, caption decoders, pooling, projection heads, two-tower model.

Importing the package is cheap (configs only); the torch modules load on first attribute use.
"""

from __future__ import annotations

import importlib
from typing import Any

from alp_models.configs import (
    BertTextEncoderConfig,
    MiniLMTextEncoderConfig,
    ProjectionConfig,
    TransformerAudioEncoderConfig,
    TransformerCaptionDecoderConfig,
)
from alp_models.version import __version__

_LAZY = {
    "AudioTextModel": "alp_models.two_tower",
    "build_audio_text_model": "alp_models.assembly",
    "component_seed": "alp_models.assembly",
    "BertTextEncoder": "alp_models.text.bert",
    "CaptionTokenizer": "alp_models.text.tokenizer",
    "MLPProjection": "alp_models.heads",
    "TransformerAudioEncoder": "alp_models.audio.transformer",
    "TransformerCaptionDecoder": "alp_models.decoder.transformer",
    "build_bert_text_encoder": "alp_models.text.bert",
    "build_minilm_text_encoder": "alp_models.text.bert",
    "build_transformer_audio_encoder": "alp_models.audio.transformer",
    "build_transformer_caption_decoder": "alp_models.decoder.transformer",
    "length_mask": "alp_models.pooling",
    "masked_mean": "alp_models.pooling",
}

__all__ = [
    "BertTextEncoderConfig", "MiniLMTextEncoderConfig", "ProjectionConfig",
    "TransformerAudioEncoderConfig", "TransformerCaptionDecoderConfig", "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    """Import the torch-backed public names on first use (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alp_models' has no attribute {name!r}")
