"""The ``zipformer`` ALP audio encoder: conv2d front end + multi-rate Zipformer stacks.

Filterbank features (B, T, F) at 100 Hz + lengths → frames (B, T', D) at
100 / 2 / output_downsampling Hz + exact lengths. Padding-exact: a clip's frames do not
depend on what else is in its batch, and frames past each clip's length are zero.
"""

from __future__ import annotations

from torch import Tensor, nn

from alp_models.audio.protocol import check_inputs
from alp_models.audio.zipformer.encoder import Zipformer2
from alp_models.audio.zipformer.subsampling import (
    MIN_INPUT_FRAMES,
    Conv2dSubsampling,
    frontend_lengths,
)
from alp_models.configs import ZipformerConfig
from alp_models.pooling import length_mask

__all__ = ["ZipformerAudioEncoder", "build_zipformer_encoder"]


class ZipformerAudioEncoder(nn.Module):
    """Zipformer over filterbank frames with the ALP audio-encoder contract.

    Attributes ``output_dim`` (width of the output frames) and ``frame_rate`` (output frames
    per second of a 100 Hz input: 25.0 for the ``base`` preset); ``min_input_frames``: the
    fewest input frames a batch may have (the conv2d front end's kernel).
    """

    min_input_frames = MIN_INPUT_FRAMES

    def __init__(self, config: ZipformerConfig) -> None:
        super().__init__()
        self.config = config
        dims = config.encoder_dims
        self.encoder_embed = Conv2dSubsampling(
            config.input_dim, dims[0], tuple(config.frontend_channels), config.dropout
        )
        self.encoder = Zipformer2(
            num_encoder_layers=config.num_encoder_layers,
            encoder_dims=dims,
            feedforward_dims=config.feedforward_dims,
            num_heads=config.num_heads,
            downsampling_factors=config.downsampling_factors,
            cnn_module_kernels=config.cnn_module_kernels,
            query_head_dim=config.query_head_dim,
            value_head_dim=config.value_head_dim,
            pos_head_dim=config.pos_head_dim,
            pos_dim=config.pos_dim,
            output_downsampling=config.output_downsampling,
            dropout=config.dropout,
            pos_dropout=config.pos_dropout,
        )
        width = self.encoder.output_dim
        self.output_dim = config.output_dim or width
        self.input_dim = config.input_dim
        self.output_proj = nn.Linear(width, self.output_dim) if self.output_dim != width else None
        self.frame_rate = 100.0 / 2 / config.output_downsampling

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames for clips of ``lengths`` input frames: ceil(((L - 7) // 2) / ds)."""
        return self.encoder.output_lengths(frontend_lengths(lengths))

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, input_dim), lengths (B,) → frames (B, T', output_dim), lengths."""
        check_inputs(features, lengths, self.config.input_dim)
        if features.shape[1] < MIN_INPUT_FRAMES:
            raise ValueError(
                f"zipformer needs at least {MIN_INPUT_FRAMES} input frames (the conv2d front "
                f"end maps T to (T - 7) // 2), got T = {features.shape[1]}"
            )
        if lengths.shape != (features.shape[0],):
            raise ValueError(
                f"lengths must be ({features.shape[0]},), one per clip, got {tuple(lengths.shape)}"
            )
        lengths = lengths.to(features.device).clamp(max=features.shape[1])
        x, embed_lengths = self.encoder_embed(features, lengths)
        x, out_lengths = self.encoder(x, embed_lengths)
        if self.output_proj is not None:
            x = self.output_proj(x)
        valid = length_mask(out_lengths, x.shape[1]).unsqueeze(-1)
        return x.masked_fill(~valid, 0.0), out_lengths


def build_zipformer_encoder(config: ZipformerConfig, **_: object) -> ZipformerAudioEncoder:
    """Factory of the ``zipformer`` audio encoder record."""
    return ZipformerAudioEncoder(config)
