"""The paper's caption decoder: a post-norm Transformer decoder cross-attending to audio frames.

One forward serves both captioning modes of a batch: rows flagged ``causal`` are trained
autoregressively with teacher forcing, the others in CapPa parallel mode (full self-attention
over, typically, all-[MASK] inputs). Greedy decoding re-runs the decoder on the growing prefix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from alp_core.errors import ConfigError
from alp_models.audio.transformer import sinusoidal_positions
from alp_models.configs import TransformerCaptionDecoderConfig
from alp_models.pooling import length_mask
from alp_models.text.tokenizer import CaptionTokenizer

__all__ = ["TransformerCaptionDecoder", "build_transformer_caption_decoder"]


def _check_shape(name: str, tensor: object, expected: tuple[int | str, ...]) -> Tensor:
    """Raise a ValueError naming ``name`` unless ``tensor`` has ``expected`` (str = any size)."""
    shown = "(" + ", ".join(str(e) for e in expected) + ")"
    if not isinstance(tensor, Tensor):
        raise ValueError(f"{name} must be a tensor of shape {shown}, got {type(tensor).__name__}")
    if tensor.dim() != len(expected) or any(
        isinstance(e, int) and s != e for s, e in zip(tensor.shape, expected)
    ):
        raise ValueError(f"{name} must have shape {shown}, got {tuple(tensor.shape)}")
    return tensor


class TransformerCaptionDecoder(nn.Module):
    """Token ids (B, T) + audio frames (B, S, memory_dim) + frame lengths → logits (B, T, V).

    Captions are tokenised as ``[CLS] tokens [SEP] [PAD]...``, so [CLS] serves as BOS and
    [SEP] as EOS (``special_ids``). ``tokenizer`` is a picklable :class:`CaptionTokenizer`
    truncating to ``config.max_tokens`` for use in DataLoader workers.
    """

    def __init__(self, config: TransformerCaptionDecoderConfig, memory_dim: int) -> None:
        super().__init__()
        if int(memory_dim) < 1:
            raise ConfigError(f"caption_decoder: memory_dim must be >= 1, got {memory_dim}")
        self.config, self.memory_dim = config, int(memory_dim)
        self.d_model, self.num_heads = config.d_model, config.num_heads
        self.tokenizer = CaptionTokenizer(config.tokenizer, max_tokens=config.max_tokens)
        self.special_ids = self._special_ids(self.tokenizer)
        self.vocab_size: int = self.special_ids["vocab_size"]

        d = config.d_model
        self.embed = nn.Embedding(self.vocab_size, d)
        self.embed_scale = math.sqrt(d)
        self.register_buffer(
            "positions", sinusoidal_positions(config.max_tokens, d), persistent=False
        )
        self.input_dropout = nn.Dropout(config.dropout)
        self.memory_proj: nn.Module = (
            nn.Identity() if self.memory_dim == d
            else nn.Linear(self.memory_dim, d, bias=config.bias)
        )
        layer = nn.TransformerDecoderLayer(
            d, config.num_heads, dim_feedforward=config.ffn_dim, dropout=config.dropout,
            activation=config.activation, batch_first=True, norm_first=config.norm_first,
            bias=config.bias,
        )
        # Post-norm layers end in a LayerNorm already; pre-norm needs a final one.
        final_norm = nn.LayerNorm(d, bias=config.bias) if config.norm_first else None
        self.decoder = nn.TransformerDecoder(layer, config.num_layers, norm=final_norm)
        self.output = nn.Linear(d, self.vocab_size, bias=config.bias)
        self._reset_parameters()
        if config.tie_embeddings:
            self.output.weight = self.embed.weight

    @staticmethod
    def _special_ids(tokenizer: CaptionTokenizer) -> dict[str, int]:
        """BOS/EOS/PAD/MASK ids of the tokenizer; it must frame captions as BOS ... EOS."""
        hf = tokenizer.hf_tokenizer
        bos = hf.cls_token_id if hf.cls_token_id is not None else hf.bos_token_id
        eos = hf.sep_token_id if hf.sep_token_id is not None else hf.eos_token_id
        ids = {"bos_id": bos, "eos_id": eos, "pad_id": hf.pad_token_id,
               "mask_id": hf.mask_token_id}
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ConfigError(
                f"caption_decoder.tokenizer: {tokenizer.path} defines no {', '.join(missing)}; "
                "accepted: a tokenizer with CLS/BOS, SEP/EOS, PAD and MASK tokens"
            )
        probe = tokenizer(["a"])["input_ids"][0].tolist()
        if probe[0] != bos or probe[-1] != eos:
            raise ConfigError(
                f"caption_decoder.tokenizer: {tokenizer.path} does not frame captions as "
                f"BOS ... EOS (got ids {probe}); accepted: a BERT- or BART-style tokenizer"
            )
        return {**{k: int(v) for k, v in ids.items()}, "vocab_size": tokenizer.vocab_size}

    def _reset_parameters(self) -> None:
        # nn.TransformerDecoder deep-copies one layer; give every layer its own init.
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        if isinstance(self.memory_proj, nn.Linear):
            nn.init.xavier_uniform_(self.memory_proj.weight)
        # Unit-variance scaled embeddings, and logits of unit scale when tied.
        nn.init.normal_(self.embed.weight, std=self.d_model**-0.5)
        if not self.config.tie_embeddings:
            nn.init.normal_(self.output.weight, std=self.d_model**-0.5)

    def tokenize(self, captions: list[str]) -> dict[str, Tensor]:
        """Captions → ``input_ids`` and ``attention_mask`` (BOS ... EOS, padded, truncated)."""
        return self.tokenizer(captions)

    # -- masks and inputs ----------------------------------------------------------------
    def _memory_padding(self, memory: Tensor, memory_lengths: Tensor, batch: int) -> Tensor:
        """Validate the encoder frames; (B, S) True at padded frames (none for empty clips)."""
        _check_shape("memory", memory, (batch, "frames", self.memory_dim))
        if not memory.is_floating_point():
            raise ValueError(f"memory must be a floating-point tensor, got {memory.dtype}")
        _check_shape("memory_lengths", memory_lengths, (batch,))
        valid = length_mask(memory_lengths, memory.shape[1])
        # A zero-length clip would mask every key (NaN); let it attend anywhere instead.
        return ~(valid | (memory_lengths <= 0).unsqueeze(1))

    def _self_attention_mask(self, attention_mask: Tensor, causal: Tensor) -> Tensor:
        """(B * heads, T, T), True = masked: per-row causal triangle plus target key padding.

        The diagonal is always open so that no query row is fully masked (a padded query
        otherwise could be); real queries never see padded keys, so this changes nothing real.
        """
        t = attention_mask.shape[1]
        pos = torch.arange(t, device=attention_mask.device)
        future = pos[None, :] > pos[:, None]  # (T, T): key after query
        masked = (future[None] & causal[:, None, None]) | ~attention_mask[:, None, :]
        masked = masked & ~torch.eye(t, dtype=torch.bool, device=masked.device)
        return masked.repeat_interleave(self.num_heads, dim=0)

    def _logits(self, input_ids: Tensor, attention_mask: Tensor, causal: Tensor,
                memory: Tensor, memory_padding: Tensor) -> Tensor:
        """Logits from validated inputs and already projected ``memory``."""
        t = input_ids.shape[1]
        x = self.embed(input_ids) * self.embed_scale + self.positions[:t]
        x = self.input_dropout(x)
        h = self.decoder(
            x, memory, tgt_mask=self._self_attention_mask(attention_mask, causal),
            memory_key_padding_mask=memory_padding,
        )
        return self.output(h)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, causal: Tensor | bool,
                memory: Tensor, memory_lengths: Tensor) -> Tensor:
        """Logits (B, T, vocab_size) for every target position.

        ``attention_mask`` (B, T) is True (or 1) at real tokens; ``causal`` (B,) bool picks,
        per row, a causal mask (True) or full self-attention (False, CapPa parallel mode); a
        plain bool applies to every row. ``memory`` (B, S, memory_dim) are the encoder frames,
        valid up to ``memory_lengths`` (B,). Outputs at padded positions are finite but
        meaningless.
        """
        _check_shape("input_ids", input_ids, ("batch", "tokens"))
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be integer token ids, got {input_ids.dtype}")
        b, t = input_ids.shape
        if not 1 <= t <= self.config.max_tokens:
            raise ValueError(
                f"input_ids must have 1 to {self.config.max_tokens} tokens "
                f"(caption_decoder.max_tokens), got {t}"
            )
        attention_mask = _check_shape("attention_mask", attention_mask, (b, t)).bool()
        if isinstance(causal, bool):
            causal = torch.full((b,), causal, dtype=torch.bool, device=input_ids.device)
        causal = _check_shape("causal", causal, (b,)).bool()
        padding = self._memory_padding(memory, memory_lengths, b)
        return self._logits(input_ids, attention_mask, causal, self.memory_proj(memory), padding)

    # -- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, memory: Tensor, memory_lengths: Tensor,
                 max_tokens: int | None = None) -> Tensor:
        """Greedy captions (B, L) int64: BOS, argmax tokens, EOS, then PAD after each row's EOS.

        Stops when every row has emitted EOS or at ``max_tokens`` ids in total (BOS included;
        default ``config.max_tokens``). Puts nothing in eval mode: that is the caller's job.
        Each step re-runs the whole decoder on the prefix (no key/value cache), which is
        simple and fine for evaluation-sized batches; the memory projection runs once.
        """
        limit = self.config.max_tokens if max_tokens is None else int(max_tokens)
        if not 1 <= limit <= self.config.max_tokens:
            raise ValueError(
                f"max_tokens must be in 1..{self.config.max_tokens} "
                f"(caption_decoder.max_tokens), got {max_tokens}"
            )
        _check_shape("memory", memory, ("batch", "frames", self.memory_dim))
        b = memory.shape[0]
        padding = self._memory_padding(memory, memory_lengths, b)
        projected = self.memory_proj(memory)
        ids = torch.full((b, 1), self.special_ids["bos_id"], dtype=torch.long,
                         device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        causal = torch.ones(b, dtype=torch.bool, device=memory.device)
        while ids.shape[1] < limit and not bool(done.all()):
            real = torch.ones_like(ids, dtype=torch.bool)
            step = self._logits(ids, real, causal, projected, padding)[:, -1].argmax(-1)
            step = step.masked_fill(done, self.special_ids["pad_id"])
            ids = torch.cat([ids, step[:, None]], dim=1)
            done |= step == self.special_ids["eos_id"]
        return ids

    def decode(self, ids: Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Token ids (B, L) → caption texts, cut at each row's first EOS, specials skipped."""
        if isinstance(ids, Tensor):
            rows = [ids.tolist()] if ids.dim() == 1 else ids.tolist()
        else:
            rows = [list(r) for r in ids]
        eos = self.special_ids["eos_id"]
        rows = [r[: r.index(eos)] if eos in r else r for r in rows]
        return self.tokenizer.hf_tokenizer.batch_decode(
            rows, skip_special_tokens=True, clean_up_tokenization_spaces=True
        )


def build_transformer_caption_decoder(
    config: TransformerCaptionDecoderConfig, *, memory_dim: int, **_: object
) -> TransformerCaptionDecoder:
    """Factory of the ``transformer`` caption decoder record (``memory_dim``: encoder width)."""
    return TransformerCaptionDecoder(config, memory_dim)
