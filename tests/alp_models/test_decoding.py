"""Caption decoding: the key/value cache and beam search of TransformerCaptionDecoder.

The cached decoder must reproduce the slow reference (the whole decoder re-run on the prefix)
token for token; beam search is checked against an exhaustive search over every caption of a
5-token vocabulary, scored by a reference written here from ``forward``.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import Tensor, nn

from alp_core import ConfigError
from alp_models.configs import TransformerCaptionDecoderConfig
from alp_models.decoder.transformer import (
    TransformerCaptionDecoder,
    _CachedStepper,
    build_transformer_caption_decoder,
)

TINY = {"d_model": 32, "num_layers": 2, "num_heads": 4, "ffn_dim": 64, "dropout": 0.0}
MEMORY_DIM = 16
BOS, EOS, PAD, MASK, VOCAB = 0, 1, 2, 3, 5


def _decoder(seed: int = 0, **kw) -> TransformerCaptionDecoder:
    torch.manual_seed(seed)
    cfg = TransformerCaptionDecoderConfig(**{**TINY, **kw})
    return build_transformer_caption_decoder(cfg, memory_dim=MEMORY_DIM).eval()


def _small_vocab(seed: int, max_tokens: int = 4, scale: float = 2.0,
                 **kw) -> TransformerCaptionDecoder:
    """A random decoder over a 5-token vocabulary (BOS 0, EOS 1, PAD 2, MASK 3, a word 4).

    ``scale`` sharpens the next-token distributions, so that captions end at various lengths.
    """
    dec = _decoder(seed, max_tokens=max_tokens, **kw)
    d = dec.d_model
    dec.embed = nn.Embedding(VOCAB, d)
    nn.init.normal_(dec.embed.weight, std=scale * d**-0.5)
    dec.output = nn.Linear(d, VOCAB, bias=False)  # untied: tied ones repeat their input
    nn.init.normal_(dec.output.weight, std=scale * d**-0.5)
    dec.vocab_size = VOCAB
    dec.special_ids = {"bos_id": BOS, "eos_id": EOS, "pad_id": PAD, "mask_id": MASK,
                       "vocab_size": VOCAB}
    return dec.eval()


def _batch(seed: int, b: int = 4, frames: int = 7) -> tuple[Tensor, Tensor]:
    """Random frames with varied lengths; junk (large values) in the padded frames."""
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(b, frames, MEMORY_DIM, generator=g)
    lengths = torch.randint(1, frames + 1, (b,), generator=g)
    lengths[0] = frames
    for i, n in enumerate(lengths.tolist()):
        memory[i, n:] = 100.0
    return memory, lengths


def _caption(row: list[int]) -> list[int]:
    """A generated row cut after its first EOS (rows without EOS were truncated, unpadded)."""
    return row[: row.index(EOS) + 1] if EOS in row else row


def _score(dec, memory: Tensor, length: int, ids: list[int], alpha: float) -> float:
    """Reference score of BOS + tokens: sum of token log-probs / (number of tokens) ** alpha."""
    prefix = torch.tensor([ids[:-1]])
    with torch.no_grad():
        logits = dec(prefix, torch.ones_like(prefix), True, memory[None, :length],
                     torch.tensor([length]))
    logp = torch.log_softmax(logits[0].double(), -1)
    total = float(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum())
    return total / (len(ids) - 1) ** alpha


def _exhaustive(dec, memory: Tensor, length: int, limit: int,
                alphas: list[float]) -> dict[float, tuple[float, list[int]]]:
    """Best (score, ids) per alpha over every caption: ending in EOS, or truncated at limit."""
    words = [t for t in range(VOCAB) if t != EOS]
    captions = [[BOS, *body, EOS] for n in range(limit - 1)
                for body in itertools.product(words, repeat=n)]
    captions += [[BOS, *body] for body in itertools.product(words, repeat=limit - 1)]
    raw = [(_score(dec, memory, length, c, 0.0), c) for c in captions]
    return {a: max((s / (len(c) - 1) ** a, c) for s, c in raw) for a in alphas}


# -- key/value cache ----------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "bias": True, "activation": "relu"}])
def test_cached_step_logits_match_forward(kw):
    dec = _decoder(**kw, max_tokens=12)
    memory, lengths = _batch(0, b=3)
    lengths[2] = 0  # a zero-length clip attends to every frame in both paths
    ids = torch.randint(1000, 2000, (3, 10))
    with torch.no_grad():
        full = dec(ids, torch.ones_like(ids), True, memory, lengths)
        padding = dec._memory_padding(memory, lengths, 3)
        state = _CachedStepper(dec, dec.memory_proj(memory), padding, beams=1)
        steps = torch.stack([state.next_logits(ids[:, : t + 1]) for t in range(10)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kw", [{}, {"norm_first": True, "bias": True}])
def test_cached_greedy_equals_uncached_on_random_decoders(kw):
    dec = _decoder(**kw, max_tokens=16)
    for seed in range(3):
        memory, lengths = _batch(seed, b=5)
        fast = dec.generate(memory, lengths)
        torch.testing.assert_close(fast, dec.generate(memory, lengths, use_cache=False))
        assert fast.shape == (5, 16)  # a random 30k-word decoder never picks EOS here


def test_cached_greedy_equals_uncached_with_eos():
    ended = set()
    for seed in range(6):
        dec = _small_vocab(seed, max_tokens=10, norm_first=seed % 2 == 1)
        memory, lengths = _batch(seed, b=6)
        fast = dec.generate(memory, lengths)
        torch.testing.assert_close(fast, dec.generate(memory, lengths, use_cache=False))
        ended |= {len(_caption(r)) for r in fast.tolist()}
    assert len(ended) >= 4  # rows stopped at many different lengths


def test_greedy_limits_and_padding():
    dec = _small_vocab(1, max_tokens=10)
    memory, lengths = _batch(3, b=6)
    out = dec.generate(memory, lengths)
    for row in out.tolist():
        caption = _caption(row)
        assert caption[0] == BOS and all(t == PAD for t in row[len(caption):])
    assert out.shape[1] == max(len(_caption(r)) for r in out.tolist())
    torch.testing.assert_close(dec.generate(memory, lengths, max_tokens=3), out[:, :3])
    assert dec.generate(memory, lengths, max_tokens=1).tolist() == [[BOS]] * 6


# -- beam search ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0])
def test_beam_one_is_greedy(alpha):
    for seed in range(4):
        dec = _small_vocab(seed, max_tokens=10)
        memory, lengths = _batch(seed, b=6)
        greedy = dec.generate(memory, lengths)
        torch.testing.assert_close(
            dec.generate(memory, lengths, num_beams=1, length_penalty=alpha), greedy)
        torch.testing.assert_close(
            dec.beam_search(memory, lengths, num_beams=1, length_penalty=alpha), greedy)
    big = _decoder(max_tokens=8)
    memory, lengths = _batch(0)
    torch.testing.assert_close(big.beam_search(memory, lengths, num_beams=1),
                               big.generate(memory, lengths))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wide_beam_finds_exhaustive_best(seed):
    dec = _small_vocab(seed, max_tokens=4, scale=1.0, norm_first=seed == 2)
    memory, lengths = _batch(seed, b=3)
    alphas = [0.0, 0.6, 1.0]
    for alpha in alphas:
        # 125 beams keep every hypothesis of 3 generated tokens over 5 words: no pruning.
        out = dec.generate(memory, lengths, num_beams=125, length_penalty=alpha)
        for b, row in enumerate(out.tolist()):
            n = int(lengths[b])
            best_score, best = _exhaustive(dec, memory[b], n, 4, [alpha])[alpha]
            found = _caption(row)
            assert math.isclose(_score(dec, memory[b], n, found, alpha), best_score,
                                abs_tol=1e-5), (alpha, b, found, best)
            assert found == best


def test_beam_scores_at_least_greedy():
    for seed, beams, alpha in itertools.product(range(4), (2, 4), (0.0, 1.0)):
        dec = _small_vocab(seed, max_tokens=8, scale=1.5)
        memory, lengths = _batch(seed, b=4)
        greedy = dec.generate(memory, lengths).tolist()
        beam = dec.generate(memory, lengths, num_beams=beams, length_penalty=alpha).tolist()
        for b in range(4):
            n = int(lengths[b])
            s_beam = _score(dec, memory[b], n, _caption(beam[b]), alpha)
            s_greedy = _score(dec, memory[b], n, _caption(greedy[b]), alpha)
            assert s_beam >= s_greedy - 1e-6, (seed, beams, alpha, b)


def test_beam_clips_are_independent_and_cache_free_path_agrees():
    dec = _small_vocab(5, max_tokens=10)
    memory, lengths = _batch(5, b=5)
    lengths[4] = 2
    out = dec.generate(memory, lengths, num_beams=3, length_penalty=0.7)
    torch.testing.assert_close(
        out, dec.generate(memory, lengths, num_beams=3, length_penalty=0.7, use_cache=False))
    for b in range(5):
        n = int(lengths[b])
        alone = dec.generate(memory[b : b + 1, :n], lengths[b : b + 1], num_beams=3,
                             length_penalty=0.7)
        assert _caption(alone[0].tolist()) == _caption(out[b].tolist())
    for row in out.tolist():
        caption = _caption(row)
        assert caption[0] == BOS and all(t == PAD for t in row[len(caption):])
    assert out.shape[1] == max(len(_caption(r)) for r in out.tolist()) <= 10
    assert dec.generate(memory, lengths, max_tokens=1, num_beams=3).tolist() == [[BOS]] * 5
    assert dec.generate(memory, lengths, max_tokens=3, num_beams=3).shape[1] <= 3


def test_big_vocab_beam_search_runs_to_the_limit():
    dec = _decoder(max_tokens=8, norm_first=True)
    memory, lengths = _batch(1, b=3)
    out = dec.generate(memory, lengths, num_beams=4)
    assert out.shape == (3, 8) and (out[:, 0] == dec.special_ids["bos_id"]).all()
    torch.testing.assert_close(out, dec.generate(memory, lengths, num_beams=4, use_cache=False))


def test_config_sets_generation_defaults():
    cfg = TransformerCaptionDecoderConfig()
    assert (cfg.num_beams, cfg.length_penalty) == (1, 1.0)
    base = _small_vocab(2, max_tokens=10)
    memory, lengths = _batch(2, b=4)
    tuned = _small_vocab(2, max_tokens=10, num_beams=3, length_penalty=0.0)
    assert (tuned.config.num_beams, tuned.config.length_penalty) == (3, 0.0)
    torch.testing.assert_close(tuned.generate(memory, lengths),
                               base.generate(memory, lengths, num_beams=3, length_penalty=0.0))
    torch.testing.assert_close(tuned.generate(memory, lengths, num_beams=1),
                               base.generate(memory, lengths))
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        base.generate(memory, lengths, num_beams=0)
    with pytest.raises(ValueError, match="length_penalty must be finite"):
        base.beam_search(memory, lengths, num_beams=2, length_penalty=math.nan)
    with pytest.raises(ValueError, match="max_tokens must be in 1..10"):
        base.generate(memory, lengths, max_tokens=11, num_beams=2)
    from alp_core.manager import new_plugin_manager

    record = new_plugin_manager().get("caption_decoder", "transformer")
    with pytest.raises(ConfigError, match="num_beams"):
        record.build({**TINY, "num_beams": 0}, memory_dim=MEMORY_DIM)


def test_a_batch_whose_clips_all_have_no_frame_decodes_the_same_on_every_path():
    # forward and the uncached loop failed on 0-frame memory while the cached loop ran
    dec = _decoder(3, max_tokens=6)
    empty, lengths = torch.zeros(2, 0, MEMORY_DIM), torch.zeros(2, dtype=torch.long)
    one = torch.zeros(2, 1, MEMORY_DIM)  # what it stands for: one zero frame to attend to
    cached = dec.generate(empty, lengths)
    assert torch.equal(cached, dec.generate(empty, lengths, use_cache=False))
    assert torch.equal(cached, dec.generate(one, lengths))
    ids = torch.tensor([[0, 4, 4], [0, 4, 1]])
    mask = torch.ones(2, 3)
    torch.testing.assert_close(dec(ids, mask, True, empty, lengths), dec(ids, mask, True, one,
                                                                           lengths))


def test_the_transformer_encoder_takes_a_batch_without_frames():
    from alp_models.audio.transformer import TransformerAudioEncoder
    from alp_models.configs import TransformerAudioEncoderConfig

    enc = TransformerAudioEncoder(TransformerAudioEncoderConfig(num_layers=1)).eval()
    frames, lengths = enc(torch.zeros(2, 0, 80), torch.tensor([0, 0]))
    assert frames.shape == (2, 0, enc.output_dim) and lengths.tolist() == [0, 0]
