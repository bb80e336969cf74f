"""The paper's caption decoder: a post-norm Transformer decoder cross-attending to audio frames.

One forward serves both captioning modes of a batch: rows flagged ``causal`` are trained
autoregressively with teacher forcing, the others in CapPa parallel mode (full self-attention
over, typically, all-[MASK] inputs). Greedy and beam-search decoding run incrementally with a
key/value cache (``use_cache=False``: the slow reference re-running the decoder on the prefix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
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
    @staticmethod
    def _some_frames(memory: Tensor) -> Tensor:
        """``memory`` with at least one frame: a batch whose clips all have none gets one
        zero frame, which its empty clips attend to (as an empty clip among longer ones
        attends to the padding), so every decoding path runs and agrees."""
        if memory.dim() != 3 or memory.shape[1] > 0:
            return memory
        return memory.new_zeros(memory.shape[0], 1, memory.shape[2])

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
        memory = self._some_frames(memory)
        padding = self._memory_padding(memory, memory_lengths, b)
        return self._logits(input_ids, attention_mask, causal, self.memory_proj(memory), padding)

    # -- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, memory: Tensor, memory_lengths: Tensor, max_tokens: int | None = None,
                 *, num_beams: int | None = None, length_penalty: float | None = None,
                 use_cache: bool = True) -> Tensor:
        """Captions (B, L) int64: BOS, tokens, EOS, then PAD after each row's EOS.

        ``num_beams`` (default ``config.num_beams``) of 1 decodes greedily: argmax tokens until
        every row has emitted EOS or holds ``max_tokens`` ids in total (BOS included; default
        ``config.max_tokens``). More beams run :meth:`beam_search` with ``length_penalty``
        (default ``config.length_penalty``). ``use_cache`` (default) decodes incrementally
        with a key/value cache: each step runs only the newest position through the layers,
        its self-attention reading the cached keys/values of the earlier positions, and the
        cross-attention keys/values of the memory are computed once. ``use_cache=False`` is
        the slow reference: every step re-runs the whole decoder on the prefix. Both give
        the same tokens (up to float rounding of near-ties). Puts nothing in eval mode: that
        is the caller's job.
        """
        beams = self.config.num_beams if num_beams is None else int(num_beams)
        if beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if beams > 1:
            return self.beam_search(memory, memory_lengths, max_tokens, num_beams=beams,
                                    length_penalty=length_penalty, use_cache=use_cache)
        limit, padding, projected = self._prepare_generation(memory, memory_lengths, max_tokens)
        if not use_cache:
            return self._greedy_uncached(projected, padding, limit)
        b, device = memory.shape[0], memory.device
        bos, eos = self.special_ids["bos_id"], self.special_ids["eos_id"]
        out = torch.full((b, limit), self.special_ids["pad_id"], dtype=torch.long,
                         device=device)
        out[:, 0] = bos
        state = _CachedStepper(self, projected, padding, beams=1)
        active = torch.arange(b, device=device)  # rows still decoding (not yet at EOS)
        tokens, width = out[:, :1], 1
        while width < limit and active.numel():
            step = state.next_logits(tokens).argmax(-1)
            out[active, width] = step
            width += 1
            running = step != eos
            if not bool(running.all()):
                keep = running.nonzero().squeeze(1)
                active, step = active[keep], step[keep]
                state.select(keep, keep)
            tokens = step[:, None]
        return out[:, :width]

    @torch.no_grad()
    def beam_search(self, memory: Tensor, memory_lengths: Tensor, max_tokens: int | None = None,
                    *, num_beams: int | None = None, length_penalty: float | None = None,
                    use_cache: bool = True) -> Tensor:
        """Beam-search captions (B, L) int64, laid out as :meth:`generate`'s.

        Each clip runs its own ``num_beams`` beams (default ``config.num_beams``). A finished
        hypothesis ``y`` (its ``n`` generated tokens, EOS included, BOS not) scores

            ``score(y) = sum_i log p(y_i | y_<i, audio) / n ** length_penalty``

        (``length_penalty``, default ``config.length_penalty``: 0 ranks by total
        log-probability, 1 by mean per-token log-probability; larger values favour longer
        captions). A hypothesis that reaches ``max_tokens`` ids without EOS finishes there
        as is (as a greedy row would), scored the same way over its ``n = max_tokens - 1``
        tokens. Per step and clip, the ``2 * num_beams`` best extensions of the live beams
        (by their summed log-probability) are ranked; those ending in EOS and ranked within
        the first ``num_beams`` join the clip's finished hypotheses (the ``num_beams`` best
        are kept), and the ``num_beams`` best of the others stay live. A clip stops at
        ``max_tokens``, or once it holds ``num_beams`` finished hypotheses and the worst of
        them scores at least what the best live beam would if it ended now (the usual
        heuristic, as Hugging Face's ``early_stopping=False``); it returns its best-scoring
        hypothesis. With one beam this is exactly greedy decoding. ``use_cache`` as in
        :meth:`generate`.
        """
        beams = self.config.num_beams if num_beams is None else int(num_beams)
        if beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        alpha = self.config.length_penalty if length_penalty is None else float(length_penalty)
        if not math.isfinite(alpha):
            raise ValueError(f"length_penalty must be finite, got {length_penalty}")
        limit, padding, projected = self._prepare_generation(memory, memory_lengths, max_tokens)
        b, device = memory.shape[0], memory.device
        bos, eos, pad = (self.special_ids[k] for k in ("bos_id", "eos_id", "pad_id"))
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        if limit == 1:
            return torch.full((b, 1), bos, dtype=torch.long, device=device)
        state: _CachedStepper | _UncachedStepper = (
            _CachedStepper(self, projected, padding, beams) if use_cache
            else _UncachedStepper(self, projected, padding, beams)
        )
        clips = torch.arange(b, device=device)  # clips still searching
        prefixes = torch.full((b * beams, 1), bos, dtype=torch.long, device=device)
        scores = torch.full((b, beams), -math.inf, device=device)
        scores[:, 0] = 0.0  # one live beam to start with: the others would duplicate it
        for width in range(2, limit + 1):  # width: prefix length after this step
            n = clips.numel()
            logp = torch.log_softmax(state.next_logits(prefixes).float(), dim=-1)
            vocab = logp.shape[-1]
            extended = (scores.reshape(-1, 1) + logp).reshape(n, beams * vocab)
            top, flat = extended.topk(min(2 * beams, beams * vocab), dim=1)
            source, token = flat // vocab, flat % vocab  # (n, 2k): beam and token of each
            is_eos = token == eos
            norm = (width - 1) ** alpha
            # EOS extensions ranked within the first k finish (each clip keeps its k best).
            done_eos = (is_eos[:, :beams] & torch.isfinite(top[:, :beams])).nonzero().tolist()
            top_list = top.tolist() if done_eos else []
            for c, r in done_eos:
                row = c * beams + int(source[c, r])
                _keep_best(finished[int(clips[c])], beams, top_list[c][r] / norm,
                           prefixes[row].tolist() + [eos])
            # The k best non-EOS extensions stay live (there are >= k of the 2k).
            live = torch.sort(is_eos.to(torch.int8), dim=1, stable=True).indices[:, :beams]
            scores = top.gather(1, live)
            rows = (torch.arange(n, device=device)[:, None] * beams
                    + source.gather(1, live)).reshape(-1)
            prefixes = torch.cat([prefixes[rows], token.gather(1, live).reshape(-1, 1)], dim=1)
            if width == limit:  # the survivors finish here without EOS, as greedy rows do
                score_list, prefix_list = scores.tolist(), prefixes.tolist()
                for c in range(n):
                    for j in range(beams):
                        if math.isfinite(score_list[c][j]):
                            _keep_best(finished[int(clips[c])], beams, score_list[c][j] / norm,
                                       prefix_list[c * beams + j])
                break
            best_live = (scores[:, 0] / norm).tolist()  # were the best live beam to end now
            searching = torch.tensor(
                [len(finished[c]) < beams or min(h[0] for h in finished[c]) < live
                 for c, live in zip(clips.tolist(), best_live)], device=device)
            state.select(rows, None)
            if not bool(searching.all()):
                keep = searching.nonzero().squeeze(1)
                keep_rows = (keep[:, None] * beams
                             + torch.arange(beams, device=device)).reshape(-1)
                clips, scores, prefixes = clips[keep], scores[keep], prefixes[keep_rows]
                state.select(keep_rows, keep)
                if not clips.numel():
                    break
        best = [max(hyps, key=lambda h: h[0])[1] for hyps in finished]
        width = max(len(r) for r in best)
        return torch.tensor([r + [pad] * (width - len(r)) for r in best], dtype=torch.long,
                            device=device)

    def _prepare_generation(self, memory: Tensor, memory_lengths: Tensor,
                            max_tokens: int | None) -> tuple[int, Tensor, Tensor]:
        """Validated length limit, memory padding (B, S) and projected memory (B, S, d)."""
        limit = self.config.max_tokens if max_tokens is None else int(max_tokens)
        if not 1 <= limit <= self.config.max_tokens:
            raise ValueError(
                f"max_tokens must be in 1..{self.config.max_tokens} "
                f"(caption_decoder.max_tokens), got {max_tokens}"
            )
        _check_shape("memory", memory, ("batch", "frames", self.memory_dim))
        memory = self._some_frames(memory)
        padding = self._memory_padding(memory, memory_lengths, memory.shape[0])
        return limit, padding, self.memory_proj(memory)

    def _greedy_uncached(self, projected: Tensor, padding: Tensor, limit: int) -> Tensor:
        """The reference greedy loop: re-runs the whole decoder on the prefix every step."""
        b, device = projected.shape[0], projected.device
        ids = torch.full((b, 1), self.special_ids["bos_id"], dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        causal = torch.ones(b, dtype=torch.bool, device=device)
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


def _keep_best(hyps: list[tuple[float, list[int]]], size: int, score: float,
               ids: list[int]) -> None:
    """Add the hypothesis (``score``, ``ids``) to ``hyps``, keeping the ``size`` best."""
    if len(hyps) < size:
        hyps.append((score, ids))
        return
    worst = min(range(len(hyps)), key=lambda i: hyps[i][0])
    if score > hyps[worst][0]:
        hyps[worst] = (score, ids)


def _heads(x: Tensor, num_heads: int) -> Tensor:
    """(N, T, d) → (N, heads, T, d / heads)."""
    n, t, d = x.shape
    return x.view(n, t, num_heads, d // num_heads).transpose(1, 2)


def _feed_forward(layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
    """The feed-forward block of ``layer`` (as its own forward applies it)."""
    return layer.dropout3(layer.linear2(layer.dropout(layer.activation(layer.linear1(x)))))


class _CachedStepper:
    """Incremental decoding state: per-layer key/value caches of one decoder.

    Rows are ``beams`` consecutive hypotheses per clip. The self-attention cache holds, per
    layer, the keys/values of every position fed so far (computed from the layer input, or
    from its first norm's output in pre-norm layers), one entry per row; the cross-attention
    keys/values of the projected memory are computed once, one entry per clip, and a clip's
    beams attend to them as ``beams`` queries of one attention call.
    """

    def __init__(self, model: TransformerCaptionDecoder, projected: Tensor, padding: Tensor,
                 beams: int) -> None:
        self.model, self.beams, self.heads = model, beams, model.num_heads
        self.layers: list[nn.TransformerDecoderLayer] = list(model.decoder.layers)
        self.self_k: list[Tensor | None] = [None] * len(self.layers)
        self.self_v: list[Tensor | None] = [None] * len(self.layers)
        self.cross_k: list[Tensor] = []
        self.cross_v: list[Tensor] = []
        d = model.d_model
        for layer in self.layers:
            attn = layer.multihead_attn
            w, bias = attn.in_proj_weight, attn.in_proj_bias
            b_k, b_v = (None, None) if bias is None else (bias[d : 2 * d], bias[2 * d :])
            self.cross_k.append(_heads(F.linear(projected, w[d : 2 * d], b_k), self.heads))
            self.cross_v.append(_heads(F.linear(projected, w[2 * d :], b_v), self.heads))
        self.cross_mask = ~padding[:, None, None, :]  # (clips, 1, 1, S): True = attend
        self.position = 0

    def select(self, rows: Tensor, clips: Tensor | None) -> None:
        """Keep/reorder the cached rows (and, given ``clips``, the clips' memory)."""
        self.self_k = [k.index_select(0, rows) if k is not None else k for k in self.self_k]
        self.self_v = [v.index_select(0, rows) if v is not None else v for v in self.self_v]
        if clips is not None:
            self.cross_k = [k.index_select(0, clips) for k in self.cross_k]
            self.cross_v = [v.index_select(0, clips) for v in self.cross_v]
            self.cross_mask = self.cross_mask.index_select(0, clips)

    def next_logits(self, prefixes: Tensor) -> Tensor:
        """Logits (rows, V) after the prefixes (rows, t); only their last token is new."""
        model, pos = self.model, self.position
        x = model.embed(prefixes[:, -1:]) * model.embed_scale + model.positions[pos : pos + 1]
        x = model.input_dropout(x)
        for i, layer in enumerate(self.layers):
            if layer.norm_first:
                x = x + self._self_block(i, layer, layer.norm1(x))
                x = x + self._cross_block(i, layer, layer.norm2(x))
                x = x + _feed_forward(layer, layer.norm3(x))
            else:
                x = layer.norm1(x + self._self_block(i, layer, x))
                x = layer.norm2(x + self._cross_block(i, layer, x))
                x = layer.norm3(x + _feed_forward(layer, x))
        if model.decoder.norm is not None:
            x = model.decoder.norm(x)
        self.position += 1
        return model.output(x[:, 0])

    def _self_block(self, i: int, layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
        attn = layer.self_attn
        q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        k, v = _heads(k, self.heads), _heads(v, self.heads)
        past_k, past_v = self.self_k[i], self.self_v[i]
        if past_k is not None and past_v is not None:
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        self.self_k[i], self.self_v[i] = k, v
        p = attn.dropout if self.model.training else 0.0
        out = F.scaled_dot_product_attention(_heads(q, self.heads), k, v, dropout_p=p)
        return layer.dropout1(attn.out_proj(out.transpose(1, 2).reshape(x.shape)))

    def _cross_block(self, i: int, layer: nn.TransformerDecoderLayer, x: Tensor) -> Tensor:
        attn, d = layer.multihead_attn, self.model.d_model
        bias = None if attn.in_proj_bias is None else attn.in_proj_bias[:d]
        q = F.linear(x, attn.in_proj_weight[:d], bias)  # (clips * beams, 1, d)
        q = _heads(q.reshape(-1, self.beams, d), self.heads)  # a clip's beams as its queries
        p = attn.dropout if self.model.training else 0.0
        out = F.scaled_dot_product_attention(q, self.cross_k[i], self.cross_v[i],
                                             attn_mask=self.cross_mask, dropout_p=p)
        return layer.dropout2(attn.out_proj(out.transpose(1, 2).reshape(x.shape)))


class _UncachedStepper:
    """The reference decoding state: re-runs the whole decoder on the prefixes every step."""

    def __init__(self, model: TransformerCaptionDecoder, projected: Tensor, padding: Tensor,
                 beams: int) -> None:
        self.model, self.beams = model, beams
        self.projected, self.padding = projected, padding

    def select(self, rows: Tensor, clips: Tensor | None) -> None:
        """Keep the given clips' memory (rows live in the prefixes, which the caller keeps)."""
        if clips is not None:
            self.projected = self.projected.index_select(0, clips)
            self.padding = self.padding.index_select(0, clips)

    def next_logits(self, prefixes: Tensor) -> Tensor:
        """Logits (rows, V) after the prefixes (rows, t)."""
        memory = self.projected.repeat_interleave(self.beams, dim=0)
        padding = self.padding.repeat_interleave(self.beams, dim=0)
        real = torch.ones_like(prefixes, dtype=torch.bool)
        causal = torch.ones(prefixes.shape[0], dtype=torch.bool, device=prefixes.device)
        return self.model._logits(prefixes, real, causal, memory, padding)[:, -1]
