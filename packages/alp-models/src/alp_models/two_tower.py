"""The contrastive two-tower audio–text model of the paper.

Audio: encoder frames → per-frame MLP projection → masked mean → L2 norm.
Text: encoder (CLS or mean pooled) → MLP projection → L2 norm.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from alp_models.configs import ProjectionConfig
from alp_models.heads import MLPProjection
from alp_models.pooling import masked_mean

__all__ = ["AudioTextModel"]

_BATCH_KEYS = ("features", "feature_lengths", "input_ids", "attention_mask")


class AudioTextModel(nn.Module):
    """Audio and text towers with their projection heads into one ``embed_dim`` space.

    ``audio_encoder`` maps (features, lengths) → (frames, lengths) and has ``output_dim``;
    ``text_encoder`` maps (input_ids, attention_mask) → (B, output_dim).
    """

    def __init__(
        self, audio_encoder: nn.Module, text_encoder: nn.Module,
        projection: ProjectionConfig | None = None,
    ) -> None:
        super().__init__()
        projection = projection or ProjectionConfig()
        self.projection_config = projection
        self.embed_dim = projection.embed_dim
        self.audio_encoder, self.text_encoder = audio_encoder, text_encoder
        hidden = projection.resolved_hidden_dim
        self.audio_proj = MLPProjection(int(audio_encoder.output_dim), projection.embed_dim, hidden)
        self.text_proj = MLPProjection(int(text_encoder.output_dim), projection.embed_dim, hidden)

    @property
    def tokenizer(self) -> Any:
        """The text tower's picklable caption tokenizer (None when it has none)."""
        return getattr(self.text_encoder, "tokenizer", None)

    def encode_audio(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder frames (B, T', D), zero past each length, and their lengths (B,)."""
        return self.audio_encoder(features, lengths)

    def pooled_audio(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Masked mean of the encoder frames (B, D): what linear probes read."""
        frames, out_lengths = self.encode_audio(features, lengths)
        return masked_mean(frames, out_lengths)

    def _embed_frames(self, frames: Tensor, lengths: Tensor) -> Tensor:
        return F.normalize(masked_mean(self.audio_proj(frames), lengths), dim=-1)

    def embed_audio(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Unit-norm audio embeddings (B, embed_dim): project per frame, pool, normalise."""
        return self._embed_frames(*self.encode_audio(features, lengths))

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Unit-norm caption embeddings (B, embed_dim): pool, project, normalise."""
        return F.normalize(self.text_proj(self.text_encoder(input_ids, attention_mask)), dim=-1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """A collated batch → audio/text embeddings plus the encoder frames and lengths."""
        missing = [k for k in _BATCH_KEYS if k not in batch]
        if missing:
            raise KeyError(f"batch is missing {missing}; AudioTextModel needs {list(_BATCH_KEYS)}")
        frames, lengths = self.encode_audio(batch["features"], batch["feature_lengths"])
        return {
            "audio_embeds": self._embed_frames(frames, lengths),
            "text_embeds": self.embed_text(batch["input_ids"], batch["attention_mask"]),
            "audio_frames": frames,
            "audio_lengths": lengths,
        }
