"""masked_mean against a loop reference; MLPProjection shapes and structure."""

from __future__ import annotations

import torch

from alp_models.heads import MLPProjection
from alp_models.pooling import length_mask, masked_mean


def _reference_mean(frames, lengths):
    rows = []
    for b in range(frames.shape[0]):
        n = int(lengths[b])
        rows.append(frames[b, :n].mean(0) if n else torch.zeros(frames.shape[-1]))
    return torch.stack(rows)


def test_masked_mean_matches_loop_and_ignores_padding():
    frames = torch.randn(5, 9, 4)
    lengths = torch.tensor([9, 1, 4, 0, 7])
    expected = _reference_mean(frames, lengths)
    torch.testing.assert_close(masked_mean(frames, lengths), expected)
    garbage = frames.clone()
    garbage[~length_mask(lengths, 9)] = 1e6
    torch.testing.assert_close(masked_mean(garbage, lengths), expected)


def test_length_mask():
    mask = length_mask(torch.tensor([0, 2, 3]), 3)
    assert mask.tolist() == [[False] * 3, [True, True, False], [True] * 3]


def test_mlp_projection_shapes():
    head = MLPProjection(12, 6, hidden_dim=20)
    assert head(torch.randn(3, 12)).shape == (3, 6)
    assert head(torch.randn(3, 5, 12)).shape == (3, 5, 6)
    assert [type(m).__name__ for m in head.children()] == ["Linear", "ReLU", "Linear"]
    assert head.fc1.out_features == 20
    assert MLPProjection(12, 6).fc1.out_features == 6
