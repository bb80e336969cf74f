"""Zipformer's conv2d front end: 100 Hz fbank (B, T, F) → 50 Hz frames (B, (T - 7) // 2, D).

Three convolutions over (time, frequency) with SwooshR, a ConvNeXt block, a linear map of
the flattened (channels × frequency) to the width of the first stack, and a BiasNorm. The
first three convolutions do not pad the time axis, so each valid output frame only reads
frames of its own clip; the ConvNeXt block does pad it, so frames past each clip's length
are zeroed before it (what a clip alone sees as its zero padding).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alp_models.audio.zipformer.scaling import BiasNorm, SwooshL, SwooshR
from alp_models.pooling import length_mask

__all__ = ["MIN_INPUT_FRAMES", "Conv2dSubsampling", "ConvNeXt", "frontend_lengths"]

MIN_INPUT_FRAMES = 9
"""The shortest clip that yields one frame: (9 - 7) // 2 = 1."""


def frontend_lengths(lengths: Tensor) -> Tensor:
    """Frames out of the front end for clips of ``lengths`` input frames: (L - 7) // 2, >= 0."""
    return torch.div(lengths - 7, 2, rounding_mode="floor").clamp(min=0)


class ConvNeXt(nn.Module):
    """Residual depthwise 7×7 conv → pointwise expand ×3 → SwooshL → pointwise project."""

    def __init__(self, channels: int, hidden_ratio: int = 3, kernel_size: int = 7) -> None:
        super().__init__()
        hidden = channels * hidden_ratio
        self.depthwise_conv = nn.Conv2d(
            channels, channels, kernel_size, groups=channels, padding=kernel_size // 2
        )
        self.pointwise_conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.activation = SwooshL()
        self.pointwise_conv2 = nn.Conv2d(hidden, channels, kernel_size=1)
        with torch.no_grad():  # start the residual branch small (icefall's initial_scale)
            self.pointwise_conv2.weight.mul_(0.01)
            self.pointwise_conv2.bias.uniform_(-0.001, 0.001)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T, F) with padded time steps already zeroed."""
        y = self.pointwise_conv1(self.depthwise_conv(x))
        return x + self.pointwise_conv2(self.activation(y))


class Conv2dSubsampling(nn.Module):
    """Conv2d subsampling to half the frame rate, as icefall's Zipformer ``encoder_embed``."""

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        channels: tuple[int, int, int] = (8, 32, 128),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c1, kernel_size=3, padding=(0, 1)),
            SwooshR(),
            nn.Conv2d(c1, c2, kernel_size=3, stride=2),
            SwooshR(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=(1, 2)),
            SwooshR(),
        )
        self.convnext = ConvNeXt(c3)
        self.out_width = ((input_dim - 1) // 2 - 1) // 2
        self.out = nn.Linear(self.out_width * c3, output_dim)
        self.out_norm = BiasNorm(output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, F), T >= 9 → frames (B, (T - 7) // 2, D) and their lengths."""
        x = self.conv(features.unsqueeze(1))  # (B, C, T', F')
        out_lengths = frontend_lengths(lengths)
        x = x.masked_fill(~length_mask(out_lengths, x.shape[2])[:, None, :, None], 0.0)
        x = self.convnext(x)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return self.dropout(self.out_norm(x)), out_lengths
