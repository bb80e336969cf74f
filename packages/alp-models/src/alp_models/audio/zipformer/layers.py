"""The Zipformer layer and its feed-forward and convolution modules.

A layer is (Yao et al., Fig. 2): attention weights once; FF1, NonlinAttention, SelfAttention1,
Conv1, FF2; a learned mid-layer bypass back towards the layer input; SelfAttention2, Conv2,
FF3; BiasNorm; a learned bypass. Every module is a residual branch whose output projection
starts small, so an untrained layer is close to the identity.
"""

from __future__ import annotations

from torch import Tensor, nn

from alp_models.audio.zipformer.attention import (
    NonlinAttention,
    RelPositionMultiheadAttentionWeights,
    SelfAttention,
)
from alp_models.audio.zipformer.scaling import BiasNorm, Bypass, scaled_linear, swoosh_l, swoosh_r

__all__ = ["ConvolutionModule", "FeedforwardModule", "ZipformerLayer"]


class FeedforwardModule(nn.Module):
    """Linear → SwooshL → dropout → Linear (output initialised at 0.1 scale)."""

    def __init__(self, embed_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = scaled_linear(hidden_dim, embed_dim, 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.out_proj(self.dropout(swoosh_l(self.in_proj(x))))


class ConvolutionModule(nn.Module):
    """Sigmoid-gated linear unit → depthwise conv over time → SwooshR → Linear.

    Frames past each clip's length are zeroed before the depthwise convolution so they are
    read as the same zero padding the clip sees alone.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"cnn_module_kernels: kernel sizes must be odd, got {kernel_size}")
        self.in_proj = nn.Linear(channels, 2 * channels)
        self.depthwise_conv = nn.Conv1d(
            channels, channels, kernel_size, groups=channels, padding=kernel_size // 2
        )
        self.out_proj = scaled_linear(channels, channels, 0.05)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """x (B, T, C); key_padding_mask (B, T) True at padding."""
        x, gate = self.in_proj(x).chunk(2, dim=-1)
        x = x * gate.sigmoid()
        if key_padding_mask is not None:
            x = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        return self.out_proj(swoosh_r(self.depthwise(x)))

    def depthwise(self, x: Tensor) -> Tensor:
        """The depthwise convolution over time, (B, T, C) → (B, T, C)."""
        return self.depthwise_conv(x.transpose(1, 2)).transpose(1, 2)


class ZipformerLayer(nn.Module):
    """One Zipformer block: three FFs, one NonlinAttention, two SelfAttentions, two convs.

    The feed-forward hidden sizes are 3/4, 1 and 5/4 of ``feedforward_dim`` (icefall's).
    """

    def __init__(
        self,
        embed_dim: int,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        value_head_dim: int,
        feedforward_dim: int,
        cnn_module_kernel: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn_weights = RelPositionMultiheadAttentionWeights(
            embed_dim, pos_dim, num_heads, query_head_dim, pos_head_dim
        )
        self.self_attn1 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.self_attn2 = SelfAttention(embed_dim, num_heads, value_head_dim)
        self.feed_forward1 = FeedforwardModule(embed_dim, feedforward_dim * 3 // 4, dropout)
        self.feed_forward2 = FeedforwardModule(embed_dim, feedforward_dim, dropout)
        self.feed_forward3 = FeedforwardModule(embed_dim, feedforward_dim * 5 // 4, dropout)
        self.nonlin_attention = NonlinAttention(embed_dim, 3 * embed_dim // 4)
        self.conv_module1 = ConvolutionModule(embed_dim, cnn_module_kernel)
        self.conv_module2 = ConvolutionModule(embed_dim, cnn_module_kernel)
        self.norm = BiasNorm(embed_dim)
        self.bypass_mid = Bypass(embed_dim)
        self.bypass = Bypass(embed_dim)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """x (B, T, C), pos_emb (2T - 1, pos_dim), key_padding_mask (B, T) → (B, T, C)."""
        orig = x
        weights = self.self_attn_weights(x, pos_emb, key_padding_mask)
        x = x + self.feed_forward1(x)
        x = x + self.nonlin_attention(x, weights[:, :1])
        x = x + self.self_attn1(x, weights)
        x = x + self.conv_module1(x, key_padding_mask)
        x = x + self.feed_forward2(x)
        x = self.bypass_mid(orig, x)
        x = x + self.self_attn2(x, weights)
        x = x + self.conv_module2(x, key_padding_mask)
        x = x + self.feed_forward3(x)
        return self.bypass(orig, self.norm(x))
