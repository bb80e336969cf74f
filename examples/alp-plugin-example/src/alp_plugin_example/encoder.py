"""A small convolutional audio encoder that follows ALP's encoder contract."""

from __future__ import annotations

import torch
from torch import nn

from alp_plugin_example.configs import Conv1dEncoderConfig


class Conv1dEncoder(nn.Module):
    """features (B, T, F) + lengths (B,) -> frames (B, T', C) + lengths (B,); stride 2 per layer."""

    def __init__(self, config: Conv1dEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.channels
        layers, dim = [], config.input_dim
        for _ in range(config.num_layers):
            layers.append(nn.Conv1d(dim, config.channels, config.kernel_size, stride=2,
                                    padding=config.kernel_size // 2))
            dim = config.channels
        self.layers = nn.ModuleList(layers)

    def _one_layer(self, lengths: torch.Tensor) -> torch.Tensor:
        k = self.config.kernel_size
        return (lengths + 2 * (k // 2) - k) // 2 + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in self.layers:
            lengths = self._one_layer(lengths)
        return lengths

    def forward(self, features: torch.Tensor, lengths: torch.Tensor):
        x = features.transpose(1, 2)
        cur = lengths
        for layer in self.layers:
            mask = torch.arange(x.shape[-1], device=x.device)[None, :] < cur[:, None]
            x = torch.relu(layer(x * mask[:, None, :]))
            cur = self._one_layer(cur)
        mask = torch.arange(x.shape[-1], device=x.device)[None, :] < cur[:, None]
        return (x * mask[:, None, :]).transpose(1, 2), cur
