"""A pre-norm Transformer audio encoder behind a strided conv2d stem.

A compact stand-in for the paper's Zipformer: the same interface (features + lengths in,
subsampled frames + exact lengths out) and the same padding contract, so the pooling,
projection and evaluation code never depends on which encoder is plugged in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_core.errors import ConfigError
from alp_models.audio.protocol import check_inputs
from alp_models.configs import TransformerAudioEncoderConfig
from alp_models.pooling import length_mask

__all__ = ["TransformerAudioEncoder", "build_transformer_audio_encoder"]


def _stride2_length(lengths: Tensor) -> Tensor:
    """Output length of a kernel-3, stride-2, padding-1 convolution: ceil(L / 2)."""
    return torch.div(lengths + 1, 2, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    """Stride-2 conv2d stages over (time, frequency), then a linear map to ``d_model``.

    Before each stage the frames past each clip's length are zeroed, so a clip's valid output
    does not depend on how much padding (or what) the batch added after it.
    """

    def __init__(self, input_dim: int, d_model: int, stages: int) -> None:
        super().__init__()
        channels = max(8, d_model // 4)
        self.stages = nn.ModuleList()
        freq, in_ch = input_dim, 1
        for _ in range(stages):
            self.stages.append(nn.Conv2d(in_ch, channels, kernel_size=3, stride=2, padding=1))
            freq, in_ch = (freq + 1) // 2, channels
        self.out = nn.Linear(in_ch * freq, d_model)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        for _ in self.stages:
            lengths = _stride2_length(lengths)
        return lengths

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = features.unsqueeze(1)  # (B, 1, T, F)
        for conv in self.stages:
            # Zero what lies past each clip before the kernel can read it; after the last
            # stage nothing reads padded frames (attention masks them as keys).
            x = x.masked_fill(~length_mask(lengths, x.shape[2])[:, None, :, None], 0.0)
            x = F.relu(conv(x))
            lengths = _stride2_length(lengths)
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f)), lengths


class PreNormLayer(nn.Module):
    """One pre-norm Transformer layer: x + MHSA(LN(x)), then x + FFN(LN(x)) with GELU."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.norm_attn = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.attn_out = nn.Linear(d_model, d_model)
        self.norm_ffn = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, key_mask: Tensor) -> Tensor:
        """``key_mask`` is (B, 1, 1, T), True where a key may be attended to."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm_attn(x)).view(b, t, 3, self.num_heads, -1).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=key_mask,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.drop(self.attn_out(attn.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ffn(self.norm_ffn(x)))


def sinusoidal_positions(max_positions: int, dim: int) -> Tensor:
    """The fixed sine/cosine position table of Vaswani et al., shape (max_positions, dim)."""
    position = torch.arange(max_positions, dtype=torch.float32).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(max_positions, dim)
    table[:, 0::2] = torch.sin(position * inv_freq)
    table[:, 1::2] = torch.cos(position * inv_freq[: dim // 2])
    return table


class TransformerAudioEncoder(nn.Module):
    """Filterbank features (B, T, F) + lengths → frames (B, T', d_model) + exact lengths.

    Padded frames never influence valid ones (masked stem, key-padding mask in attention)
    and padded output positions are zero.
    """

    def __init__(self, config: TransformerAudioEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.d_model
        self.input_dim = config.input_dim
        self.frame_rate = 100.0 / config.subsampling  # output frames per second at a 10 ms hop
        stages = {1: 0, 2: 1, 4: 2}[config.subsampling]
        self.input_norm = nn.LayerNorm(config.input_dim) if config.input_norm == "frame" else None
        self.subsampling = ConvSubsampling(config.input_dim, config.d_model, stages)
        table = sinusoidal_positions(config.max_positions, config.d_model)
        self.register_buffer("positions", table, persistent=False)
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            PreNormLayer(config.d_model, config.num_heads, config.ffn_dim, config.dropout)
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(config.d_model)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Number of output frames for input clips of ``lengths`` frames."""
        return self.subsampling.output_lengths(lengths)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        check_inputs(features, lengths, self.config.input_dim)
        lengths = lengths.to(features.device)  # lengths may come on the CPU
        if features.shape[1] == 0:  # no frames at all: the conv stem cannot run
            return features.new_zeros(features.shape[0], 0, self.output_dim), lengths.clone()
        if self.input_norm is not None:
            features = self.input_norm(features)
        x, out_lengths = self.subsampling(features, lengths)
        t = x.shape[1]
        if t > self.config.max_positions:
            raise ConfigError(
                f"audio_encoder.max_positions: {t} encoder frames exceed "
                f"{self.config.max_positions}; raise max_positions or crop the clips"
            )
        x = self.input_dropout(x + self.positions[:t].to(x.dtype))
        valid = length_mask(out_lengths, t)
        # A zero-length clip would mask every key (NaN); let it attend anywhere, output is zeroed.
        key_mask = (valid | (out_lengths == 0).unsqueeze(1))[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_mask)
        x = self.final_norm(x) * valid.unsqueeze(-1)
        return x, out_lengths


def build_transformer_audio_encoder(
    config: TransformerAudioEncoderConfig, **_: object
) -> TransformerAudioEncoder:
    """Factory of the ``transformer`` audio encoder record."""
    return TransformerAudioEncoder(config)
