"""Poolers by name: masked mean, multi-head attention pooling with learned queries, CLS —
each against a slow reference, padding-invariant, selectable in the run config."""

from __future__ import annotations

import math

import pytest
import torch

from alp_models.configs import PoolerConfig
from alp_models.pooling import AttentionPooler, build_pooler, masked_mean


def _frames():
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(3, 7, 8, generator=g)
    lengths = torch.tensor([7, 4, 1])
    return frames, lengths


def _reference_attention(pool: AttentionPooler, frames, lengths):
    """One clip at a time, only its valid frames, the attention written out by hand."""
    mha = pool.attn
    d, h = mha.embed_dim, mha.num_heads
    wq, wk, wv = mha.in_proj_weight.split(d)
    bq, bk, bv = mha.in_proj_bias.split(d)
    out = []
    for b in range(frames.shape[0]):
        x = frames[b, : int(lengths[b])]
        q = pool.queries @ wq.T + bq
        k, v = x @ wk.T + bk, x @ wv.T + bv
        heads = []
        for i in range(h):
            sl = slice(i * d // h, (i + 1) * d // h)
            att = torch.softmax(q[:, sl] @ k[:, sl].T / math.sqrt(d // h), dim=-1)
            heads.append(att @ v[:, sl])
        y = torch.cat(heads, dim=-1) @ mha.out_proj.weight.T + mha.out_proj.bias
        out.append(y.mean(dim=0))
    return torch.stack(out)


def test_attention_pooling_matches_a_per_clip_reference():
    torch.manual_seed(0)
    pool = AttentionPooler(8, num_heads=2, num_queries=3).eval()
    frames, lengths = _frames()
    frames[1, 4:] = 1e3  # padding content must not matter
    got = pool(frames, lengths)
    want = _reference_attention(pool, frames, lengths)
    assert torch.allclose(got, want, atol=1e-5)
    alone = pool(frames[1:2, :4], lengths[1:2])
    assert torch.allclose(alone, got[1:2], atol=1e-5)


def test_mean_and_cls_pooling():
    frames, lengths = _frames()
    mean = build_pooler(PoolerConfig(name="mean"), 8)
    assert torch.allclose(mean(frames, lengths), masked_mean(frames, lengths))
    assert torch.allclose(mean(frames, lengths)[1], frames[1, :4].mean(0))
    cls = build_pooler(PoolerConfig(name="cls"), 8)
    assert torch.equal(cls(frames, lengths), frames[:, 0])
    assert torch.equal(cls(frames, torch.tensor([7, 0, 1]))[1], torch.zeros(8))


def test_zero_length_clip_pools_to_zeros_without_nan():
    pool = AttentionPooler(8, num_heads=2).eval()
    frames, _ = _frames()
    out = pool(frames, torch.tensor([7, 0, 2]))
    assert torch.isfinite(out).all() and torch.equal(out[1], torch.zeros(8))


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        AttentionPooler(10, num_heads=4)


def test_run_config_selects_the_pooler():
    from alp_train.config import resolve_run
    from alp_train.recipe import setup_model

    tiny = {"audio_encoder": {"name": "transformer", "d_model": 16, "num_layers": 1,
                              "num_heads": 2, "ffn_dim": 32},
            "text_encoder": {"name": "bert", "hidden_size": 16, "num_layers": 1,
                             "num_heads": 2, "intermediate_size": 32}, "embed_dim": 8}
    model, _ = setup_model(resolve_run({"model": {**tiny, "pooler": {"name": "attention",
                                                                      "num_heads": 2}}}))
    assert isinstance(model.audio_pool, AttentionPooler)
    groups = dict(model.param_groups())
    assert any(n.startswith("audio_pool.") for n, _ in groups["audio"])
    emb = model.eval().embed_audio(torch.randn(2, 40, 80), torch.tensor([40, 20]))
    assert emb.shape == (2, 8) and torch.allclose(emb.norm(dim=-1), torch.ones(2))
