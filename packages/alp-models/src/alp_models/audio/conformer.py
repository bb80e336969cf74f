"""torchaudio's Conformer behind the strided conv2d stem of the ``transformer`` encoder.

torchaudio's ``Conformer`` masks padded keys in attention but lets its depthwise
convolution read whatever sits past each clip, so a clip's output would depend on the rest
of the batch. This module reuses torchaudio's layers (same parameters, same state-dict keys
under ``conformer.``) and runs them with the padded frames zeroed before every depthwise
convolution, which makes the valid frames exact in eval mode. In training mode the
convolution module's BatchNorm statistics still include the padded positions, as in
torchaudio. There are no position embeddings: as in torchaudio's model, order enters
through the depthwise convolutions.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchaudio.models import Conformer
from torchaudio.models.conformer import ConformerLayer

from alp_models.audio.protocol import check_inputs
from alp_models.audio.transformer import ConvSubsampling
from alp_models.configs import ConformerConfig
from alp_models.pooling import length_mask

__all__ = ["ConformerAudioEncoder", "build_conformer_encoder", "masked_conformer_layer"]


def _masked_conv_module(module: nn.Module, x: Tensor, valid: Tensor) -> Tensor:
    """torchaudio's ``_ConvolutionModule`` on (B, T, D) with padded frames zeroed before the
    depthwise convolution (the only step that mixes neighbouring frames)."""
    pointwise1, glu, depthwise, norm, act, pointwise2, drop = module.sequential
    y = glu(pointwise1(module.layer_norm(x).transpose(1, 2)))
    y = y.masked_fill(~valid[:, None, :], 0.0)
    y = drop(pointwise2(act(norm(depthwise(y)))))
    return y.transpose(1, 2)


def masked_conformer_layer(
    layer: ConformerLayer, x: Tensor, key_padding_mask: Tensor, valid: Tensor
) -> Tensor:
    """``ConformerLayer.forward`` on batch-first (B, T, D), with a padding-masked conv module.

    ``key_padding_mask`` is True at keys to ignore; ``valid`` is True at frames inside a clip.
    Without padding this equals torchaudio's layer (checked in the tests).
    """
    x = x + 0.5 * layer.ffn1(x)
    if layer.convolution_first:
        x = x + _masked_conv_module(layer.conv_module, x, valid)
    h = layer.self_attn_layer_norm(x)
    h, _ = layer.self_attn(
        h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1),
        key_padding_mask=key_padding_mask, need_weights=False,
    )
    x = x + layer.self_attn_dropout(h.transpose(0, 1))
    if not layer.convolution_first:
        x = x + _masked_conv_module(layer.conv_module, x, valid)
    x = x + 0.5 * layer.ffn2(x)
    return layer.final_layer_norm(x)


class ConformerAudioEncoder(nn.Module):
    """Filterbank features (B, T, F) + lengths → frames (B, T', d_model) + exact lengths.

    Input LayerNorm per frame (optional), conv2d stem (``subsampling`` 1/2/4), then the
    Conformer layers with key-padding masks and masked depthwise convolutions. Padded output
    positions are zero.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.d_model
        self.input_dim = config.input_dim
        self.frame_rate = 100.0 / config.subsampling
        stages = {1: 0, 2: 1, 4: 2}[config.subsampling]
        self.input_norm = nn.LayerNorm(config.input_dim) if config.input_norm == "frame" else None
        self.subsampling = ConvSubsampling(config.input_dim, config.d_model, stages)
        self.input_dropout = nn.Dropout(config.dropout)
        self.conformer = Conformer(
            input_dim=config.d_model, num_heads=config.num_heads, ffn_dim=config.ffn_dim,
            num_layers=config.num_layers,
            depthwise_conv_kernel_size=config.depthwise_conv_kernel_size,
            dropout=config.dropout,
        )

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Number of output frames for input clips of ``lengths`` frames: ceil(L / subsampling)."""
        return self.subsampling.output_lengths(lengths)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, input_dim), lengths (B,) → frames (B, T', d_model), lengths (B,)."""
        check_inputs(features, lengths, self.config.input_dim)
        lengths = lengths.to(features.device)  # lengths may come on the CPU
        if features.shape[1] == 0:  # no frames at all: the conv stem cannot run
            return features.new_zeros(features.shape[0], 0, self.output_dim), lengths.clone()
        if self.input_norm is not None:
            features = self.input_norm(features)
        x, out_lengths = self.subsampling(features, lengths)
        x = self.input_dropout(x)
        valid = length_mask(out_lengths, x.shape[1])
        # A zero-length clip would mask every key (NaN); let it attend anywhere, output is zeroed.
        key_padding_mask = ~(valid | (out_lengths == 0).unsqueeze(1))
        for layer in self.conformer.conformer_layers:
            x = masked_conformer_layer(layer, x, key_padding_mask, valid)
        return x * valid.unsqueeze(-1), out_lengths


def build_conformer_encoder(config: ConformerConfig, **_: object) -> ConformerAudioEncoder:
    """Factory of the ``conformer`` audio encoder record."""
    return ConformerAudioEncoder(config)

