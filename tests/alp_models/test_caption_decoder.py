"""TransformerCaptionDecoder: per-row causal masks, padding, greedy decoding, learning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from alp_core import ConfigError, validate_model
from alp_core.manager import new_plugin_manager
from alp_models.configs import TransformerCaptionDecoderConfig
from alp_models.decoder.transformer import (
    TransformerCaptionDecoder,
    build_transformer_caption_decoder,
)

TINY = {"d_model": 32, "num_layers": 2, "num_heads": 4, "ffn_dim": 64}
MEMORY_DIM = 16
CAPTIONS = ["a dog barks twice", "rain falls on a tin roof", "soft piano music"]


def _decoder(memory_dim: int = MEMORY_DIM, **kw) -> TransformerCaptionDecoder:
    torch.manual_seed(0)
    cfg = TransformerCaptionDecoderConfig(**{**TINY, **kw})
    return build_transformer_caption_decoder(cfg, memory_dim=memory_dim)


@pytest.fixture(scope="module")
def decoder():
    return _decoder().eval()


@pytest.fixture(scope="module")
def trained():
    """A tiny decoder taught to caption 3 fixed random memories, with the steps it took."""
    torch.manual_seed(0)
    dec = _decoder(dropout=0.0, max_tokens=16)
    memory = torch.randn(3, 6, MEMORY_DIM)
    lengths = torch.tensor([6, 4, 5])
    tokens = dec.tokenize(CAPTIONS)
    ids, real = tokens["input_ids"], tokens["attention_mask"].bool()
    targets = ids[:, 1:].masked_fill(~real[:, 1:], -100)
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)
    for step in range(1, 301):
        dec.train()
        logits = dec(ids[:, :-1], real[:, :-1], True, memory, lengths)
        loss = F.cross_entropy(logits.transpose(1, 2), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            dec.eval()
            if dec.decode(dec.generate(memory, lengths)) == CAPTIONS:
                break
    return dec.eval(), memory, lengths, step


def _reference_generate(dec, memory, lengths, limit):
    """Slow greedy reference: one row at a time, unpadded memory, forward on the full prefix."""
    rows = []
    for b in range(memory.shape[0]):
        n = int(lengths[b])
        mem, ids = memory[b : b + 1, :n], [dec.special_ids["bos_id"]]
        while len(ids) < limit and ids[-1] != dec.special_ids["eos_id"]:
            prefix = torch.tensor([ids])
            with torch.no_grad():
                logits = dec(prefix, torch.ones_like(prefix), torch.tensor([True]), mem,
                             torch.tensor([n]))
            ids.append(int(logits[0, -1].argmax()))
        rows.append(ids)
    width = max(len(r) for r in rows)
    return torch.tensor([r + [dec.special_ids["pad_id"]] * (width - len(r)) for r in rows])


def test_special_ids_match_tokenizer(decoder):
    hf = decoder.tokenizer.hf_tokenizer
    ids = decoder.special_ids
    assert ids == {"bos_id": hf.cls_token_id, "eos_id": hf.sep_token_id,
                   "pad_id": hf.pad_token_id, "mask_id": hf.mask_token_id,
                   "vocab_size": len(hf)}
    assert (ids["bos_id"], ids["eos_id"], ids["pad_id"], ids["mask_id"]) == (101, 102, 0, 103)
    assert decoder.vocab_size == 30522 and decoder.d_model == 32
    tokens = decoder.tokenize(CAPTIONS)
    for row, real in zip(tokens["input_ids"], tokens["attention_mask"]):
        n = int(real.sum())
        assert real[:n].all() and not real[n:].any()
        assert row[0] == ids["bos_id"] and row[n - 1] == ids["eos_id"]
        assert (row[n:] == ids["pad_id"]).all()
        assert ids["eos_id"] not in row[1 : n - 1].tolist()
    assert decoder.decode(tokens["input_ids"]) == CAPTIONS


def test_truncation_keeps_bos_and_eos():
    dec = _decoder(max_tokens=6)
    ids = dec.tokenize(["a very long caption " * 10])["input_ids"][0]
    assert ids.shape == (6,) and ids[0] == 101 and ids[-1] == 102


def test_causal_mask_applies_per_row(decoder):
    ids = torch.randint(1000, 2000, (2, 7))
    changed = ids.clone()
    changed[:, 4] += 1
    memory, lengths = torch.randn(2, 5, MEMORY_DIM), torch.tensor([5, 5])
    real, causal = torch.ones(2, 7, dtype=torch.bool), torch.tensor([True, False])
    with torch.no_grad():
        before = decoder(ids, real, causal, memory, lengths)
        after = decoder(changed, real, causal, memory, lengths)
    torch.testing.assert_close(after[0, :4], before[0, :4])  # causal row: past unaffected
    assert (after[1, :4] - before[1, :4]).abs().amax(-1).min() > 1e-4  # parallel row: all moved
    assert (after[:, 4:] - before[:, 4:]).abs().amax(-1).min() > 1e-4


@pytest.mark.parametrize("causal", [True, False])
def test_padding_invariance(decoder, causal):
    ids, memory = torch.randint(1000, 2000, (1, 5)), torch.randn(1, 4, MEMORY_DIM)
    with torch.no_grad():
        alone = decoder(ids, torch.ones(1, 5, dtype=torch.int64), causal, memory,
                        torch.tensor([4]))
        big_ids = torch.randint(1000, 2000, (3, 9))  # padded target positions hold junk ids
        big_ids[0, :5] = ids[0]
        real = torch.ones(3, 9, dtype=torch.int64)
        real[0, 5:] = 0
        real[2] = 0  # a row of padding only must stay finite (no fully masked query)
        big_memory = torch.randn(3, 11, MEMORY_DIM) * 50  # padded frames hold junk too
        big_memory[0, :4] = memory[0]
        batched = decoder(big_ids, real, torch.tensor([causal] * 3), big_memory,
                          torch.tensor([4, 11, 0]))
    torch.testing.assert_close(batched[0, :5], alone[0], atol=1e-5, rtol=1e-5)
    assert batched.shape == (3, 9, decoder.vocab_size) and torch.isfinite(batched).all()


@pytest.mark.parametrize("d_model,num_heads", [(32, 4), (30, 3)])
def test_sinusoidal_positions_match_formula(d_model, num_heads):
    dec = _decoder(d_model=d_model, num_heads=num_heads, max_tokens=20)
    table = torch.zeros(20, d_model)
    for pos in range(20):
        for i in range(0, d_model, 2):
            angle = pos / 10000 ** (i / d_model)
            table[pos, i] = math.sin(angle)
            if i + 1 < d_model:
                table[pos, i + 1] = math.cos(angle)
    torch.testing.assert_close(dec.positions, table, atol=1e-5, rtol=1e-5)
    assert "positions" not in dict(dec.named_parameters())  # fixed, not learned
    assert "positions" not in dec.state_dict()


def test_structure_post_norm_no_bias_tied(decoder):
    assert len(decoder.decoder.layers) == 2 and decoder.decoder.norm is None
    for layer in decoder.decoder.layers:
        assert layer.norm_first is False and layer.activation is F.gelu
        assert layer.self_attn.batch_first and layer.linear1.out_features == 64
    names = [n for n, _ in decoder.named_parameters()]
    assert not [n for n in names if n.endswith("bias")]
    assert decoder.output.weight is decoder.embed.weight
    assert decoder.output.weight.data_ptr() == decoder.embed.weight.data_ptr()
    assert decoder.memory_proj.weight.shape == (32, MEMORY_DIM)

    other = _decoder(memory_dim=32, bias=True, tie_embeddings=False, norm_first=True)
    assert isinstance(other.memory_proj, torch.nn.Identity)
    assert any(n.endswith("bias") for n, _ in other.named_parameters())
    assert other.output.weight.data_ptr() != other.embed.weight.data_ptr()
    assert other.decoder.norm is not None and other.decoder.layers[0].norm_first


def test_default_config_is_the_papers():
    cfg = TransformerCaptionDecoderConfig()
    assert (cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.ffn_dim) == (768, 6, 8, 3072)
    assert (cfg.dropout, cfg.activation, cfg.norm_first, cfg.bias) == (0.1, "gelu", False, False)
    assert (cfg.max_tokens, cfg.tokenizer, cfg.tie_embeddings) == (128, "bert-uncased", True)
    assert (cfg.num_beams, cfg.length_penalty) == (1, 1.0)  # greedy unless asked


def test_generate_matches_reference_and_respects_limit(decoder):
    memory, lengths = torch.randn(3, 7, MEMORY_DIM), torch.tensor([7, 3, 5])
    memory[1, 3:] = 100.0  # padding must not matter
    out = decoder.generate(memory, lengths, max_tokens=6)
    assert out.dtype == torch.int64 and out.shape[0] == 3 and out.shape[1] <= 6
    torch.testing.assert_close(out, _reference_generate(decoder, memory, lengths, 6))
    assert (out[:, 0] == decoder.special_ids["bos_id"]).all()
    assert decoder.generate(memory, lengths, max_tokens=1).tolist() == [[101]] * 3
    small = _decoder(max_tokens=8).eval()  # the default limit is config.max_tokens
    torch.testing.assert_close(small.generate(memory, lengths),
                               _reference_generate(small, memory, lengths, 8))


def test_generate_pads_after_eos(trained):
    dec, memory, lengths, _ = trained
    out = dec.generate(memory, lengths)
    torch.testing.assert_close(out, _reference_generate(dec, memory, lengths, 16))
    torch.testing.assert_close(out, dec.generate(memory, lengths, use_cache=False))
    torch.testing.assert_close(out, dec.generate(memory, lengths, num_beams=1))
    eos, pad = dec.special_ids["eos_id"], dec.special_ids["pad_id"]
    ends = [row.index(eos) for row in out.tolist()]
    assert len(set(ends)) > 1 and max(ends) == out.shape[1] - 1  # stops when all are done
    for row, end in zip(out.tolist(), ends):
        assert all(t == pad for t in row[end + 1 :])
    short = dec.generate(memory, lengths, max_tokens=3)
    torch.testing.assert_close(short, out[:, :3])


def test_learns_to_caption_fixed_memories(trained):
    dec, memory, lengths, steps = trained
    assert dec.decode(dec.generate(memory, lengths)) == [c.lower() for c in CAPTIONS]
    assert dec.decode(dec.generate(memory, lengths, num_beams=4)) == CAPTIONS
    assert steps < 300


def test_rejects_bad_inputs(decoder):
    ids, real = torch.ones(2, 4, dtype=torch.int64), torch.ones(2, 4, dtype=torch.bool)
    causal, memory = torch.tensor([True, False]), torch.randn(2, 5, 16)
    lengths = torch.tensor([5, 5])
    cases = [
        ((ids, real, causal, torch.randn(2, 5, 7), lengths),
         r"memory must have shape \(2, frames, 16\), got \(2, 5, 7\)"),
        ((ids, real, causal, torch.randn(3, 5, 16), lengths), r"memory must have shape \(2,"),
        ((ids, real, causal, memory, torch.tensor([5, 5, 5])), "memory_lengths"),
        ((ids, real, torch.tensor([True, False, True]), memory, lengths),
         r"causal must have shape \(2\)"),
        ((ids, real[:, :3], causal, memory, lengths), r"attention_mask must have shape \(2, 4\)"),
        ((ids.float(), real, causal, memory, lengths), "input_ids must be integer"),
        ((ids[0], real, causal, memory, lengths), "input_ids must have shape"),
        ((torch.ones(2, 200, dtype=torch.int64), real, causal, memory, lengths),
         "input_ids must have 1 to 128 tokens"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            decoder(*args)
    with pytest.raises(ValueError, match="memory must have shape"):
        decoder.generate(torch.randn(2, 5, 7), lengths)
    with pytest.raises(ValueError, match="max_tokens must be in 1..128"):
        decoder.generate(memory, lengths, max_tokens=129)


def test_registered_and_built_through_plugin_manager():
    import alp_models

    record = new_plugin_manager().get("caption_decoder", "transformer")
    assert record.config_cls is TransformerCaptionDecoderConfig
    dec = record.build(TINY, memory_dim=16)
    assert isinstance(dec, TransformerCaptionDecoder) and dec.memory_dim == 16
    assert alp_models.TransformerCaptionDecoder is TransformerCaptionDecoder
    with pytest.raises(ConfigError, match=r"caption_decoder\.n_layers: unknown key \(accepted"):
        record.build({**TINY, "n_layers": 2}, memory_dim=16)
    with pytest.raises(ConfigError, match="caption_decoder.n_layers: unknown key"):
        validate_model(record.config_cls, {**TINY, "n_layers": 2}, "caption_decoder")
    with pytest.raises(ConfigError, match="divisible"):
        record.build({"d_model": 30, "num_heads": 4}, memory_dim=16)
