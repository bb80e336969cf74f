"""Zipformer attention: compact relative positions, shared attention weights, their users.

One :class:`RelPositionMultiheadAttentionWeights` per layer computes softmax weights from
query/key dot products plus relative-position scores; two :class:`SelfAttention` modules
and one :class:`NonlinAttention` module reuse them, which is where Zipformer saves the cost
of computing attention three times.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from alp_models.audio.zipformer.scaling import scaled_linear

__all__ = [
    "CompactRelPositionalEncoding",
    "NonlinAttention",
    "RelPositionMultiheadAttentionWeights",
    "SelfAttention",
    "compact_rel_positions",
    "rel_shift",
]


def compact_rel_positions(seq_len: int, dim: int, length_factor: float = 1.0,
                          device: torch.device | str | None = None) -> Tensor:
    """Embeddings of the offsets -(T-1) .. T-1, shape (2T - 1, dim).

    Offsets are log-compressed beyond about sqrt(dim), mapped into (-pi/2, pi/2) by atan,
    and Fourier-expanded (cos/sin pairs of frequencies 1 .. dim/2), so near offsets are
    told apart sharply and far ones (1000 vs 1001) barely. The last channel is a constant
    1 so that the position projection can learn a bias.
    """
    offsets = torch.arange(-(seq_len - 1), seq_len, dtype=torch.float32,
                           device=device).unsqueeze(1)
    freqs = 1.0 + torch.arange(dim // 2, dtype=torch.float32, device=device)
    comp = dim**0.5
    compressed = comp * offsets.sign() * ((offsets.abs() + comp).log() - math.log(comp))
    angle = (compressed / (length_factor * dim / (2.0 * math.pi))).atan()
    table = torch.empty(offsets.shape[0], dim, device=device)
    table[:, 0::2] = (angle * freqs).cos()
    table[:, 1::2] = (angle * freqs).sin()
    table[:, -1] = 1.0
    return table


class CompactRelPositionalEncoding(nn.Module):
    """The (2T - 1, dim) relative-position table of a length-T sequence, with dropout."""

    def __init__(self, dim: int, dropout: float = 0.15, length_factor: float = 1.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"pos_dim must be even, got {dim}")
        self.dim, self.length_factor = dim, length_factor
        self.dropout = nn.Dropout(dropout)
        self._cache: tuple[int, Tensor] | None = None

    def forward(self, seq_len: int, like: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            # computed in the graph, on the input's device: a cache keyed by the length would
            # make torch.compile guard on it and recompile for every new sequence length
            table = compact_rel_positions(seq_len, self.dim, self.length_factor, like.device)
        else:  # kept on the input's device: no host-to-device copy per forward
            if (self._cache is None or self._cache[0] != seq_len
                    or self._cache[1].device != like.device):
                # a normal tensor even when first built under torch.inference_mode (e.g. an
                # embedding extraction): an inference tensor could not be saved for backward
                with torch.inference_mode(False):
                    self._cache = (seq_len, compact_rel_positions(
                        seq_len, self.dim, self.length_factor, like.device))
            table = self._cache[1]
        return self.dropout(table.to(dtype=like.dtype))


def rel_shift(pos_scores: Tensor) -> Tensor:
    """(..., T, 2T) scores by offset, column n for offset n - T + 1 (the last column unused)
    → (..., T, T) scores by key: out[..., i, j] = pos_scores[..., i, T - 1 - i + j].

    Written with views of the logical tensor only (flatten each (T, 2T) block, cut it at
    T - 1, rows of 2T - 1), never ``as_strided`` over its storage: on a GPU, Inductor may
    give an intermediate buffer padded strides (tensor-core padding of the matrix product,
    aligned row strides), and fixed strides over such a buffer read the wrong cells (NaN in
    a compiled bf16 step on an H200, 2026-11-27).
    """
    *lead, t, width = pos_scores.shape
    if width != 2 * t:
        raise ValueError(f"rel_shift: expected (..., T, 2T) scores, got {tuple(pos_scores.shape)}")
    # flat index of (i, T - 1 - i + j) is i * 2T + T - 1 - i + j = (T - 1) + i * (2T - 1) + j
    flat = pos_scores.reshape(*lead, 2 * t * t)[..., t - 1 : t - 1 + t * (2 * t - 1)]
    return flat.reshape(*lead, t, 2 * t - 1)[..., :t]


class RelPositionMultiheadAttentionWeights(nn.Module):
    """Attention weights (B, H, T, T) from content and relative-position scores.

    score[b, h, i, j] = q_i · k_j + p_i · P(j - i), where q, k (query_head_dim) and p
    (pos_head_dim) are projections of the input and P projects the compact relative
    position table. No 1/sqrt(d) factor: the query/key projection is initialised scaled
    by query_head_dim**-0.25 instead (icefall's choice). Keys past each clip are masked.
    """

    def __init__(
        self,
        embed_dim: int,
        pos_dim: int,
        num_heads: int,
        query_head_dim: int,
        pos_head_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_heads, self.query_head_dim, self.pos_head_dim = (
            num_heads, query_head_dim, pos_head_dim,
        )
        self.dropout = dropout
        in_dim = (2 * query_head_dim + pos_head_dim) * num_heads
        self.in_proj = scaled_linear(embed_dim, in_dim, query_head_dim**-0.25)
        self.linear_pos = scaled_linear(pos_dim, num_heads * pos_head_dim, 0.05, bias=False)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """x (B, T, C), pos_emb (2T - 1, pos_dim), key_padding_mask (B, T) True at padding."""
        b, t, _ = x.shape
        h, dq, dp = self.num_heads, self.query_head_dim, self.pos_head_dim
        q, k, p = self.in_proj(x).split([h * dq, h * dq, h * dp], dim=-1)
        q = q.view(b, t, h, dq).transpose(1, 2)  # (B, H, T, dq)
        k = k.view(b, t, h, dq).permute(0, 2, 3, 1)  # (B, H, dq, T)
        p = p.view(b, t, h, dp).transpose(1, 2)  # (B, H, T, dp)
        scores = torch.matmul(q, k)
        pos = self.linear_pos(pos_emb).view(2 * t - 1, h, dp).permute(1, 2, 0)  # (H, dp, 2T-1)
        # one zero column more (never read): (B, H, T, 2T), column n holds offset n - T + 1
        pos_scores = torch.matmul(p, nn.functional.pad(pos, (0, 1)))
        scores = scores + rel_shift(pos_scores)
        if key_padding_mask is not None:
            scores = scores.masked_fill(
                key_padding_mask[:, None, None, :], torch.finfo(scores.dtype).min
            )
        weights = scores.softmax(dim=-1)
        return nn.functional.dropout(weights, p=self.dropout, training=self.training)


class SelfAttention(nn.Module):
    """Values (value_head_dim per head) mixed by precomputed weights, then projected back."""

    def __init__(self, embed_dim: int, num_heads: int, value_head_dim: int) -> None:
        super().__init__()
        self.in_proj = nn.Linear(embed_dim, num_heads * value_head_dim)
        self.out_proj = scaled_linear(num_heads * value_head_dim, embed_dim, 0.05)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """x (B, T, C), weights (B, H, T, T) → (B, T, C)."""
        b, t, _ = x.shape
        h = weights.shape[1]
        v = self.in_proj(x).view(b, t, h, -1).transpose(1, 2)
        out = torch.matmul(weights, v).transpose(1, 2).reshape(b, t, -1)
        return self.out_proj(out)


class NonlinAttention(nn.Module):
    """A gated "attention-as-convolution": out = W_o((A · (x ⊙ tanh(s))) ⊙ y).

    ``s``, ``x``, ``y`` are three projections (``hidden`` channels each) of the input and
    ``A`` the weights of the layer's first attention head.
    """

    def __init__(self, embed_dim: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.in_proj = nn.Linear(embed_dim, 3 * hidden)
        self.out_proj = scaled_linear(hidden, embed_dim, 0.05)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """x (B, T, C), weights (B, H', T, T) with H' dividing ``hidden`` (icefall: H' = 1)."""
        b, t, _ = x.shape
        s, v, y = self.in_proj(x).chunk(3, dim=-1)
        v = v * torch.tanh(s)
        h = weights.shape[1]
        v = v.view(b, t, h, -1).transpose(1, 2)
        mixed = torch.matmul(weights, v).transpose(1, 2).reshape(b, t, self.hidden)
        return self.out_proj(mixed * y)
