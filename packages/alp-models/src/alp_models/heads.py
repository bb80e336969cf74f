"""Projection heads into the shared audio–text embedding space."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLPProjection"]


class MLPProjection(nn.Module):
    """The paper's 2-layer MLP head: Linear → ReLU → Linear, applied on the last axis.

    Works on pooled vectors (B, D) and per frame (B, T, D) alike, which the audio tower
    needs because it projects every frame before pooling.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim if hidden_dim is not None else out_dim
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden, out_dim
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
