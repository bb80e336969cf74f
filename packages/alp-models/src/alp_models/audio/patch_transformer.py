"""An AST-style patch Transformer that still returns a frame sequence.

The filterbank (T, F) is cut into ``patch_time`` x ``patch_freq`` patches at strides
(``stride_time``, ``stride_freq``), each patch is embedded linearly (a strided conv2d), 2-D
positions are added (a time table plus a frequency table), and pre-norm Transformer layers
attend over all patches. Unlike AST, which pools a [CLS] token, the output is one vector per
time column of patches: the mean over that column's frequency patches. So the encoder has
the same (B, T', D) + lengths contract as the others (frames at 100 / ``stride_time`` Hz),
and poolers, projections and the caption decoder work on it unchanged.

Padding: column j reads frames [j * stride_time, j * stride_time + patch_time). A clip of
length L owns the columns that start inside it, ceil(L / stride_time) of them; frames past
L are zeroed before patching, so its last, partly valid column holds exactly what a lone
clip zero-padded to the same patch grid holds. Columns past the clip are masked as keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_core.errors import ConfigError
from alp_models.audio.protocol import check_inputs
from alp_models.audio.transformer import PreNormLayer, sinusoidal_positions
from alp_models.configs import PatchTransformerConfig
from alp_models.pooling import length_mask

__all__ = ["PatchTransformerEncoder", "build_patch_transformer_encoder"]


class PatchTransformerEncoder(nn.Module):
    """Filterbank features (B, T, F) + lengths → column frames (B, T', d_model) + lengths.

    Bins past the last whole frequency patch are not read. Padded output positions are zero.
    """

    def __init__(self, config: PatchTransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.output_dim = config.d_model
        self.input_dim = config.input_dim
        self.frame_rate = 100.0 / config.stride_time
        self.freq_patches = (config.input_dim - config.patch_freq) // config.stride_freq + 1
        d = config.d_model
        self.input_norm = nn.LayerNorm(config.input_dim) if config.input_norm == "frame" else None
        self.patch_embed = nn.Conv2d(
            1, d, kernel_size=(config.patch_time, config.patch_freq),
            stride=(config.stride_time, config.stride_freq),
        )
        if config.positions == "learned":
            self.time_positions = nn.Parameter(torch.randn(config.max_time_patches, d) * 0.02)
            self.freq_positions = nn.Parameter(torch.randn(self.freq_patches, d) * 0.02)
        else:
            # First half of the width encodes the time column, second half the frequency row.
            table = torch.cat([
                sinusoidal_positions(config.max_time_patches, d // 2)[:, None, :]
                .expand(-1, self.freq_patches, -1),
                sinusoidal_positions(self.freq_patches, d // 2)[None]
                .expand(config.max_time_patches, -1, -1),
            ], dim=-1)
            self.register_buffer("positions", table.contiguous(), persistent=False)
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(
            PreNormLayer(d, config.num_heads, config.ffn_dim, config.dropout)
            for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(d)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Patch columns starting inside each clip: ceil(L / stride_time)."""
        return torch.div(lengths + self.config.stride_time - 1, self.config.stride_time,
                         rounding_mode="floor")

    def _positions(self, columns: int) -> Tensor:
        """(columns, freq_patches, d_model) position embeddings."""
        if self.config.positions == "learned":
            return self.time_positions[:columns, None, :] + self.freq_positions[None, :, :]
        return self.positions[:columns]

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, input_dim), lengths (B,) → frames (B, T', d_model), lengths (B,)."""
        cfg = self.config
        check_inputs(features, lengths, cfg.input_dim)
        lengths = lengths.to(features.device)  # lengths may come on the CPU
        b, t, _ = features.shape
        out_lengths = self.output_lengths(lengths)
        columns = int(self.output_lengths(torch.tensor(t)))
        if columns > cfg.max_time_patches:
            raise ConfigError(
                f"audio_encoder.max_time_patches: {columns} patch columns exceed "
                f"{cfg.max_time_patches}; raise max_time_patches or crop the clips"
            )
        if columns == 0:
            return features.new_zeros(b, 0, cfg.d_model), out_lengths
        if self.input_norm is not None:
            features = self.input_norm(features)
        features = features.masked_fill(~length_mask(lengths, t).unsqueeze(-1), 0.0)
        # Exactly the frames the patch grid reads, zero-padded like a lone clip would be.
        needed = (columns - 1) * cfg.stride_time + cfg.patch_time
        features = F.pad(features[:, :needed], (0, 0, 0, max(0, needed - t)))
        x = self.patch_embed(features.unsqueeze(1))  # (B, D, columns, freq_patches)
        x = x.permute(0, 2, 3, 1) + self._positions(columns).to(x.dtype)
        x = self.input_dropout(x.reshape(b, columns * self.freq_patches, cfg.d_model))
        valid = length_mask(out_lengths, columns)
        # A zero-length clip would mask every key (NaN); let it attend anywhere, output is zeroed.
        key_cols = valid | (out_lengths == 0).unsqueeze(1)
        key_mask = key_cols.repeat_interleave(self.freq_patches, dim=1)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, key_mask)
        x = self.final_norm(x).view(b, columns, self.freq_patches, cfg.d_model).mean(dim=2)
        return x * valid.unsqueeze(-1), out_lengths


def build_patch_transformer_encoder(
    config: PatchTransformerConfig, **_: object
) -> PatchTransformerEncoder:
    """Factory of the ``patch-transformer`` audio encoder record."""
    return PatchTransformerEncoder(config)
