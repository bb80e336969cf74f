"""The audio–language model of the paper: one audio encoder, a text tower and/or a decoder.

Audio: encoder frames → per-frame MLP projection → masked mean → L2 norm.
Text: encoder (CLS or mean pooled) → MLP projection → L2 norm.
Captions: a decoder cross-attending to the encoder frames → token logits.

Contrastive training needs the two towers, captioning the decoder, hybrids (CoCa) both; the
model holds what the objective needs and computes what the step gives it inputs for.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_models.configs import PoolerConfig, ProjectionConfig
from alp_models.heads import MLPProjection
from alp_models.pooling import build_pooler, masked_mean

__all__ = ["AudioTextModel"]

_AUDIO_KEYS = ("features", "feature_lengths")
_TEXT_KEYS = ("input_ids", "attention_mask")
_DECODER_KEYS = ("decoder_input_ids", "decoder_attention_mask", "decoder_causal")


class AudioTextModel(nn.Module):
    """An audio encoder with a text tower (joint ``embed_dim`` space) and/or a caption decoder.

    ``audio_encoder`` maps (features, lengths) → (frames, lengths) and has ``output_dim``;
    ``text_encoder`` maps (input_ids, attention_mask) → (B, output_dim); ``caption_decoder``
    maps (input_ids, attention_mask, causal, memory, memory_lengths) → (B, L, vocab) logits.
    Without a text encoder there is no joint space (no projections, ``embed_audio`` is None).
    """

    def __init__(
        self, audio_encoder: nn.Module, text_encoder: nn.Module | None = None,
        projection: ProjectionConfig | None = None, caption_decoder: nn.Module | None = None,
        pooler: PoolerConfig | None = None,
    ) -> None:
        super().__init__()
        if text_encoder is None and caption_decoder is None:
            raise ValueError("AudioTextModel needs a text encoder, a caption decoder, or both")
        projection = projection or ProjectionConfig()
        self.projection_config = projection
        self.embed_dim = projection.embed_dim
        self.audio_encoder, self.text_encoder = audio_encoder, text_encoder
        self.caption_decoder = caption_decoder
        self.audio_proj: nn.Module | None = None
        self.text_proj: nn.Module | None = None
        self.audio_pool: nn.Module | None = None
        self.pooler_config = pooler or PoolerConfig()
        if text_encoder is not None:
            hidden = projection.resolved_hidden_dim
            self.audio_proj = MLPProjection(
                int(audio_encoder.output_dim), projection.embed_dim, hidden)
            self.text_proj = MLPProjection(
                int(text_encoder.output_dim), projection.embed_dim, hidden)
            self.audio_pool = build_pooler(self.pooler_config, projection.embed_dim)

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Parameters by part, for per-part learning rates: ``audio`` (encoder + audio
        projection), ``text`` (text tower + text projection), ``decoder``."""
        parts = {"audio": ("audio_encoder", "audio_proj", "audio_pool"),
                 "text": ("text_encoder", "text_proj"),
                 "decoder": ("caption_decoder",)}
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for group, names in parts.items():
            for name in names:
                module = getattr(self, name)
                if module is not None:
                    groups.setdefault(group, []).extend(
                        (f"{name}.{n}", p) for n, p in module.named_parameters())
        return groups

    @property
    def tokenizer(self) -> Any:
        """The text tower's picklable caption tokenizer (None when it has none)."""
        return getattr(self.text_encoder, "tokenizer", None)

    @property
    def caption_tokenizer(self) -> Any:
        """The caption decoder's tokenizer (None without a decoder)."""
        return getattr(self.caption_decoder, "tokenizer", None)

    def encode_audio(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encoder frames (B, T', D), zero past each length, and their lengths (B,)."""
        return self.audio_encoder(features, lengths)

    def pooled_audio(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Masked mean of the encoder frames (B, D): what linear probes read."""
        frames, out_lengths = self.encode_audio(features, lengths)
        return masked_mean(frames, out_lengths)

    def _embed_frames(self, frames: Tensor, lengths: Tensor) -> Tensor:
        assert self.audio_proj is not None and self.audio_pool is not None
        return F.normalize(self.audio_pool(self.audio_proj(frames), lengths), dim=-1)

    def embed_audio(self, features: Tensor, lengths: Tensor) -> Tensor | None:
        """Unit-norm audio embeddings (B, embed_dim): project per frame, pool, normalise.

        None when the model has no text tower (hence no joint audio-text space).
        """
        if self.audio_proj is None:
            return None
        return self._embed_frames(*self.encode_audio(features, lengths))

    def pooled_and_embedded_audio(self, features: Tensor, lengths: Tensor
                                  ) -> tuple[Tensor, Tensor | None]:
        """:meth:`pooled_audio` and :meth:`embed_audio` from one pass of the encoder."""
        frames, out_lengths = self.encode_audio(features, lengths)
        joint = self._embed_frames(frames, out_lengths) if self.audio_proj is not None else None
        return masked_mean(frames, out_lengths), joint

    def embed_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Unit-norm caption embeddings (B, embed_dim): pool, project, normalise."""
        if self.text_encoder is None or self.text_proj is None:
            raise RuntimeError("this model has no text tower (captioning only): no text embeds")
        return F.normalize(self.text_proj(self.text_encoder(input_ids, attention_mask)), dim=-1)

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """A step's inputs → encoder frames and lengths, and what the parts it holds make.

        ``audio_embeds``/``text_embeds`` with a text tower (needs ``input_ids``,
        ``attention_mask``); ``caption_logits`` with a decoder when the step carries decoder
        inputs (``decoder_input_ids``, ``decoder_attention_mask``, ``decoder_causal``).
        """
        _require(batch, _AUDIO_KEYS, "audio")
        frames, lengths = self.encode_audio(batch["features"], batch["feature_lengths"])
        out = {"audio_frames": frames, "audio_lengths": lengths}
        if self.text_encoder is not None:
            _require(batch, _TEXT_KEYS, "the text tower")
            out["audio_embeds"] = self._embed_frames(frames, lengths)
            out["text_embeds"] = self.embed_text(batch["input_ids"], batch["attention_mask"])
        if self.caption_decoder is not None and "decoder_input_ids" in batch:
            _require(batch, _DECODER_KEYS, "the caption decoder")
            out["caption_logits"] = self.caption_decoder(
                batch["decoder_input_ids"], batch["decoder_attention_mask"],
                batch["decoder_causal"], frames, lengths)
        return out

    @torch.no_grad()
    def generate_captions(self, features: Tensor, lengths: Tensor, **kwargs: Any) -> list[str]:
        """Greedy captions of a batch of clips (call in eval mode)."""
        if self.caption_decoder is None:
            raise RuntimeError("this model has no caption decoder")
        frames, out_lengths = self.encode_audio(features, lengths)
        ids = self.caption_decoder.generate(frames, out_lengths, **kwargs)
        return self.caption_decoder.decode(ids)


def _require(batch: dict[str, Any], keys: tuple[str, ...], part: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"batch is missing {missing}, which {part} needs; it holds {sorted(batch)}")
