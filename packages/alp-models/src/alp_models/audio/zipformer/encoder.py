"""The multi-rate Zipformer: stacks at 50, 25, 12.5, 6.25 Hz … behind the conv2d front end.

Each stack downsamples the 50 Hz sequence by its factor (a learned softmax-weighted sum of
neighbouring frames), runs its layers, repeats frames back up to 50 Hz and blends them with
its input through a learned per-channel bypass. The widest channels seen so far are
assembled into the output, which is downsampled once more (by 2 in the paper: 25 Hz).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alp_models.audio.zipformer.attention import CompactRelPositionalEncoding
from alp_models.audio.zipformer.layers import ZipformerLayer
from alp_models.audio.zipformer.scaling import Bypass, convert_channels, repeat_last_valid
from alp_models.pooling import length_mask

__all__ = [
    "DownsampledStack",
    "SimpleDownsample",
    "SimpleUpsample",
    "Zipformer2",
    "ZipformerStack",
    "ceil_div",
]


def ceil_div(lengths: Tensor, factor: int) -> Tensor:
    """ceil(lengths / factor): frames left after downsampling by ``factor``."""
    return torch.div(lengths + factor - 1, factor, rounding_mode="floor")


class SimpleDownsample(nn.Module):
    """Groups of ``factor`` frames → their weighted sum, weights = softmax of learned logits.

    Each clip is padded with its own last frame (inside the batch too), so a clip's result
    does not depend on the frames of longer clips in its batch.
    """

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.bias = nn.Parameter(torch.zeros(factor))

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x (B, T, C) → (B, ceil(T / factor), C)."""
        b, t, c = x.shape
        ds = self.factor
        x = repeat_last_valid(x, lengths)
        t_out = (t + ds - 1) // ds
        # frames 0 .. t_out * ds - 1, the last one repeated past t: one gather with no branch
        # on t (torch.compile would guard on t's remainder and recompile when it changes)
        frames = torch.arange(t_out * ds, device=x.device).clamp_(max=t - 1)
        x = x.index_select(1, frames)
        weights = self.bias.softmax(dim=0).to(x.dtype)
        return torch.einsum("btkc,k->btc", x.view(b, t_out, ds, c), weights)


class SimpleUpsample(nn.Module):
    """Each frame repeated ``factor`` times (no parameters), cut to ``length`` frames."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor, length: int | None = None) -> Tensor:
        """(B, T, C) → (B, length or T * factor, C); frame i is x[:, i // factor]."""
        length = x.shape[1] * self.factor if length is None else length
        # one gather of exactly ``length`` frames (repeat, then cut, would leave
        # torch.compile unable to prove the cut length equal to ``length``)
        frames = torch.div(torch.arange(length, device=x.device), self.factor,
                           rounding_mode="floor")
        return x.index_select(1, frames)


class ZipformerStack(nn.Module):
    """``num_layers`` Zipformer layers at one frame rate, sharing one position table."""

    def __init__(self, num_layers: int, pos_dim: int, pos_dropout: float, **layer: object):
        super().__init__()
        self.encoder_pos = CompactRelPositionalEncoding(pos_dim, dropout=pos_dropout)
        self.layers = nn.ModuleList(
            ZipformerLayer(pos_dim=pos_dim, **layer) for _ in range(num_layers)  # type: ignore[arg-type]
        )

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        key_padding_mask = ~length_mask(lengths, x.shape[1])
        pos_emb = self.encoder_pos(x.shape[1], x)
        for layer in self.layers:
            x = layer(x, pos_emb, key_padding_mask)
        return x


class DownsampledStack(nn.Module):
    """Downsample by ``factor`` → stack → upsample, trimmed, blended with the input."""

    def __init__(self, stack: ZipformerStack, dim: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        self.downsample = SimpleDownsample(factor)
        self.encoder = stack
        self.upsample = SimpleUpsample(factor)
        self.out_combiner = Bypass(dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        y = self.encoder(self.downsample(x, lengths), ceil_div(lengths, self.factor))
        return self.out_combiner(x, self.upsample(y, x.shape[1]))


class Zipformer2(nn.Module):
    """The stacks, the full-width output assembly and the output downsampling (50 Hz in)."""

    def __init__(
        self,
        num_encoder_layers: list[int],
        encoder_dims: list[int],
        feedforward_dims: list[int],
        num_heads: list[int],
        downsampling_factors: list[int],
        cnn_module_kernels: list[int],
        query_head_dim: int,
        value_head_dim: int,
        pos_head_dim: int,
        pos_dim: int,
        output_downsampling: int,
        dropout: float,
        pos_dropout: float,
    ) -> None:
        super().__init__()
        self.encoder_dims = list(encoder_dims)
        self.output_dim = max(encoder_dims)
        self.output_downsampling = output_downsampling
        stacks: list[nn.Module] = []
        for i, dim in enumerate(encoder_dims):
            stack = ZipformerStack(
                num_encoder_layers[i], pos_dim, pos_dropout,
                embed_dim=dim, num_heads=num_heads[i], query_head_dim=query_head_dim,
                pos_head_dim=pos_head_dim, value_head_dim=value_head_dim,
                feedforward_dim=feedforward_dims[i], cnn_module_kernel=cnn_module_kernels[i],
                dropout=dropout,
            )
            factor = downsampling_factors[i]
            stacks.append(stack if factor == 1 else DownsampledStack(stack, dim, factor))
        self.encoders = nn.ModuleList(stacks)
        self.downsample_output = SimpleDownsample(output_downsampling)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        return ceil_div(lengths, self.output_downsampling)

    def _full_dim_output(self, outputs: list[Tensor]) -> Tensor:
        """The last stack's output, widened by the extra channels of earlier, wider stacks."""
        pieces, have = [outputs[-1]], self.encoder_dims[-1]
        for out, dim in zip(reversed(outputs[:-1]), reversed(self.encoder_dims[:-1])):
            if dim > have:
                pieces.append(out[..., have:dim])
                have = dim
        return torch.cat(pieces, dim=-1)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, encoder_dims[0]) at 50 Hz → (B, ceil(T / ds), max dim) and lengths."""
        outputs = []
        for dim, stack in zip(self.encoder_dims, self.encoders):
            x = stack(convert_channels(x, dim), lengths)
            outputs.append(x)
        x = self.downsample_output(self._full_dim_output(outputs), lengths)
        return x, self.output_lengths(lengths)
