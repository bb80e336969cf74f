"""Zipformer audio encoder: icefall parameter count and lengths, padding exactness, kernels.

Reference kernels (SwooshR/L, BiasNorm, relative-position attention weights) are written
here from the paper's formulas, independently of the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from alp_models.audio.zipformer import build_zipformer_encoder
from alp_models.audio.zipformer.attention import (
    RelPositionMultiheadAttentionWeights,
    compact_rel_positions,
    rel_shift,
)
from alp_models.audio.zipformer.scaling import BiasNorm, SwooshL, SwooshR
from alp_models.configs import ZipformerConfig

ICEFALL_TOTAL = 65_913_719  # icefall 36e0420, base preset, Conv2dSubsampling front end
ICEFALL_FRONTEND = 611_953
ICEFALL_ENCODER = 65_301_766


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_zipformer_encoder(ZipformerConfig(preset="base")).eval()


def _build(preset: str, **kw):
    torch.manual_seed(0)
    return build_zipformer_encoder(ZipformerConfig(preset=preset, **kw)).eval()


def test_base_parameter_count_matches_icefall(base):
    total, front, enc = _count(base), _count(base.encoder_embed), _count(base.encoder)
    print(f"zipformer base: total {total:,} (icefall {ICEFALL_TOTAL:,}), front end {front:,} "
          f"(icefall {ICEFALL_FRONTEND:,}), encoder {enc:,} (icefall {ICEFALL_ENCODER:,})")
    assert front == ICEFALL_FRONTEND
    assert abs(total - ICEFALL_TOTAL) / ICEFALL_TOTAL < 0.01
    assert abs(enc - ICEFALL_ENCODER) / ICEFALL_ENCODER < 0.01
    assert total == front + enc  # nothing outside the two parts (no output projection)


def test_base_lengths_dim_and_rate(base):
    assert base.output_dim == 512 and base.frame_rate == 25.0
    for frames, expected in ((1000, 248), (600, 148)):
        assert int(base.output_lengths(torch.tensor([frames]))[0]) == expected
    with torch.no_grad():
        out, lengths = base(torch.randn(1, 600, 80), torch.tensor([600]))
    assert out.shape == (1, 148, 512) and lengths.tolist() == [148]
    assert torch.isfinite(out).all()


def test_tiny_output_lengths_match_forward_shapes():
    enc = _build("tiny")
    frames = list(range(9, 24)) + [31, 64, 99, 100, 101, 257]
    expected = enc.output_lengths(torch.tensor(frames))
    with torch.no_grad():
        for t, want in zip(frames, expected.tolist()):
            out, lengths = enc(torch.randn(1, t, 80), torch.tensor([t]))
            assert out.shape[1] == int(lengths[0]) == want == math.ceil(((t - 7) // 2) / 2)


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_padding_invariance(preset):
    """A clip alone equals the clip batched with a longer one (atol 1e-5); padding is zero."""
    enc = _build(preset)
    torch.manual_seed(1)
    short, long = torch.randn(1, 89, 80), torch.randn(1, 203, 80)
    with torch.no_grad():
        alone, alone_len = enc(short, torch.tensor([89]))
        batch = torch.full((2, 203, 80), 7.0)  # padding content must not matter
        batch[0, :89], batch[1] = short[0], long[0]
        out, lengths = enc(batch, torch.tensor([89, 203]))
    n = int(alone_len[0])
    assert n == int(lengths[0]) == alone.shape[1]
    torch.testing.assert_close(out[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(out[0, n:] == 0)
    assert out.shape == (2, int(lengths[1]), enc.output_dim)


def test_swoosh_against_formulas():
    x = torch.linspace(-30, 30, 2001, dtype=torch.float64)
    ref_r = torch.tensor([math.log1p(math.exp(v - 1)) - 0.08 * v - 0.313261687 for v in x.tolist()],
                         dtype=torch.float64)
    ref_l = torch.tensor([math.log1p(math.exp(v - 4)) - 0.08 * v - 0.035 for v in x.tolist()],
                         dtype=torch.float64)
    torch.testing.assert_close(SwooshR()(x), ref_r, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(SwooshL()(x), ref_l, atol=1e-9, rtol=1e-9)
    assert abs(float(SwooshR()(torch.zeros(1, dtype=torch.float64)))) < 1e-8


def test_biasnorm_against_formula():
    torch.manual_seed(0)
    norm = BiasNorm(6)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3, -0.2]))
        norm.log_scale.fill_(0.3)
    x = torch.randn(3, 4, 6) * 3 + 1
    ref = torch.empty_like(x)
    for i in range(3):
        for j in range(4):
            row = x[i, j].tolist()
            rms = math.sqrt(sum((v - b) ** 2 for v, b in zip(row, norm.bias.tolist())) / 6)
            ref[i, j] = torch.tensor([v / rms * math.exp(0.3) for v in row])
    torch.testing.assert_close(norm(x), ref, atol=1e-5, rtol=1e-5)
    assert norm(x).shape == x.shape and norm.log_scale.shape == (1,)  # (1,): DeepSpeed
    # a checkpoint from before, with a 0-dim log-scale, loads into the (1,) parameter
    old = {"log_scale": torch.tensor(0.3), "bias": norm.bias.detach().clone()}
    again = BiasNorm(6)
    again.load_state_dict(old)
    torch.testing.assert_close(again(x), ref, atol=1e-5, rtol=1e-5)


def test_rel_position_attention_weights_against_loop():
    torch.manual_seed(0)
    heads, dq, dp, pos_dim, dim, t = 2, 3, 2, 8, 5, 6
    attn = RelPositionMultiheadAttentionWeights(dim, pos_dim, heads, dq, dp).eval()
    x = torch.randn(2, t, dim)
    pad = torch.zeros(2, t, dtype=torch.bool)
    pad[1, 4:] = True
    pos_emb = compact_rel_positions(t, pos_dim)
    with torch.no_grad():
        got = attn(x, pos_emb, pad)
        ref = _slow_attention_weights(attn, x, pos_emb, pad)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_rel_shift_reads_cells_by_position_in_any_layout():
    """out[i, j] = scores[i, T - 1 - i + j], also when the scores sit in a buffer with padded
    strides (as Inductor lays out intermediates on a GPU) or are not contiguous at all."""
    torch.manual_seed(0)
    for t in (1, 2, 5):
        scores = torch.randn(2, 3, t, 2 * t)
        ref = torch.empty(2, 3, t, t)
        for i in range(t):
            for j in range(t):
                ref[:, :, i, j] = scores[:, :, i, t - 1 - i + j]
        padded = torch.zeros(2, 3, t + 1, 2 * t + 3)[:, :, :t, : 2 * t]  # aligned-row layout
        padded.copy_(scores)
        transposed = scores.transpose(-1, -2).contiguous().transpose(-1, -2)
        for layout in (scores, padded, transposed):
            torch.testing.assert_close(rel_shift(layout), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 2T\)"):
        rel_shift(torch.zeros(1, 4, 7))


def _slow_attention_weights(attn, x, pos_emb, pad):
    """softmax_j(q_i . k_j + p_i . W_pos pe(j - i)) per head, padded keys excluded."""
    b_sz, t, _ = x.shape
    heads, dq, dp = attn.num_heads, attn.query_head_dim, attn.pos_head_dim
    w_in, b_in = attn.in_proj.weight, attn.in_proj.bias
    w_pos = attn.linear_pos.weight
    ref = torch.zeros(b_sz, heads, t, t)
    for b in range(b_sz):
        proj = [w_in @ x[b, i] + b_in for i in range(t)]
        for h in range(heads):
            for i in range(t):
                q = proj[i][h * dq:(h + 1) * dq]
                p = proj[i][2 * heads * dq + h * dp: 2 * heads * dq + (h + 1) * dp]
                scores = []
                for j in range(t):
                    k = proj[j][heads * dq + h * dq: heads * dq + (h + 1) * dq]
                    offset = j - i  # row (t - 1) + offset of the table holds that offset
                    pe = w_pos @ pos_emb[t - 1 + offset]
                    s = float(q @ k) + float(p @ pe[h * dp:(h + 1) * dp])
                    scores.append(-math.inf if pad[b, j] else s)
                z = max(scores)
                e = [math.exp(s - z) for s in scores]
                ref[b, h, i] = torch.tensor(e) / sum(e)
    return ref


def test_compact_positions_depend_on_offset_only():
    short, long = compact_rel_positions(4, 16), compact_rel_positions(9, 16)
    torch.testing.assert_close(short, long[5:12])  # offsets -3..3 in both
    assert torch.all(short[:, -1] == 1.0)


def test_gradient_reaches_every_parameter():
    enc = _build("tiny")
    enc.train()
    out, lengths = enc(torch.randn(2, 60, 80), torch.tensor([60, 41]))
    out.pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, f"no gradient reached: {missing}"


def test_bad_inputs():
    enc = _build("tiny")
    with pytest.raises(ValueError, match=r"\(B, T, 80\)"):
        enc(torch.randn(1, 50, 40), torch.tensor([50]))
    with pytest.raises(ValueError, match="at least 9 input frames"):
        enc(torch.randn(1, 8, 80), torch.tensor([8]))
    with pytest.raises(ValueError, match="lengths must be"):
        enc(torch.randn(2, 30, 80), torch.tensor([30]))


def test_too_short_row_in_a_batch_is_finite_and_zero():
    enc = _build("tiny")
    with torch.no_grad():
        out, lengths = enc(torch.randn(2, 40, 80), torch.tensor([40, 5]))
    assert lengths.tolist() == [8, 0]
    assert torch.isfinite(out).all() and torch.all(out[1] == 0)


def test_config_presets_overrides_and_errors():
    cfg = ZipformerConfig(preset="tiny", encoder_dims=[48, 80], query_head_dim=8)
    assert cfg.encoder_dims == [48, 80] and cfg.query_head_dim == 8
    assert cfg.num_encoder_layers == [1, 1]  # filled from the preset
    assert ZipformerConfig().feedforward_dims == [576, 768, 1152, 1536, 1152, 768]
    with pytest.raises(ValidationError, match="num_heads has 1 entries"):
        ZipformerConfig(preset="tiny", num_heads=[2])
    with pytest.raises(ValidationError, match=r"cnn_module_kernels\[1\] must be odd"):
        ZipformerConfig(preset="tiny", cnn_module_kernels=[15, 14])
    with pytest.raises(ValidationError, match="bogus"):
        ZipformerConfig(bogus=1)
    enc = _build("tiny", output_dim=40, output_downsampling=1)
    with torch.no_grad():
        out, lengths = enc(torch.randn(1, 47, 80), torch.tensor([47]))
    assert out.shape == (1, 20, 40) and enc.frame_rate == 50.0


def test_registered_as_audio_encoder():
    from alp_models.plugin import alp_audio_encoders

    record = {r.name: r for r in alp_audio_encoders()}["zipformer"]
    assert record.config_cls is ZipformerConfig


def test_downsample_and_upsample_against_loops():
    """SimpleDownsample: each group of ``factor`` frames (a clip's last valid frame repeated
    past its length and to a whole group) summed with softmax weights; SimpleUpsample: frame
    i is input frame i // factor, cut to the length asked."""
    from alp_models.audio.zipformer.encoder import SimpleDownsample, SimpleUpsample

    torch.manual_seed(3)
    x, lengths = torch.randn(2, 11, 5), torch.tensor([11, 6])
    down = SimpleDownsample(4)
    with torch.no_grad():
        down.bias.copy_(torch.tensor([0.3, -1.0, 0.5, 2.0]))
    weights = torch.softmax(down.bias.detach(), 0)
    expected = torch.zeros(2, 3, 5)
    for b in range(2):
        for g in range(3):
            for k in range(4):
                frame = min(g * 4 + k, int(lengths[b]) - 1)
                expected[b, g] += weights[k] * x[b, frame]
    torch.testing.assert_close(down(x, lengths), expected, rtol=1e-6, atol=1e-6)
    up = SimpleUpsample(3)
    y = torch.randn(2, 4, 5)
    for length in (12, 10, 7):
        got = up(y, length)
        assert got.shape == (2, length, 5)
        for i in range(length):
            assert torch.equal(got[:, i], y[:, i // 3])
    assert torch.equal(up(y), y.repeat_interleave(3, dim=1))


def test_compiles_as_one_graph_for_every_length():
    """torch.compile traces the whole encoder as one graph (fullgraph: a graph break fails)
    with dynamic lengths and batch size: one compilation serves every shape (no guard on a
    length, on its remainder or on a cached position table), and the outputs and gradients
    are the eager ones. The ``eager`` backend runs the captured graph with eager kernels:
    what is checked is Dynamo's capture, quickly and with no C++ compiler."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    enc = _build("tiny")  # eval: no dropout, so eager and compiled draw nothing
    compiled = torch.compile(enc, backend="eager", fullgraph=True, dynamic=True)
    for batch, frames in ((2, 300), (3, 281), (2, 150)):
        torch.manual_seed(frames)
        x = torch.randn(batch, frames, 80)
        lengths = torch.tensor([frames - 37 * i for i in range(batch)])
        results = []
        for model in (compiled, enc):
            out, out_lengths = model(x, lengths)
            out.pow(2).sum().backward()
            results.append((out.detach(), out_lengths,
                            [p.grad.clone() for p in enc.parameters()]))
            enc.zero_grad()
        (got, got_lengths, got_grads), (want, want_lengths, want_grads) = results
        assert torch.equal(got_lengths, want_lengths)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        for g, w in zip(got_grads, want_grads, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_training_after_an_inference_mode_pass_at_the_same_length():
    # the cached position table built under inference_mode was an inference tensor, which
    # autograd cannot save: a later training (or eval-with-grad) pass at that length failed
    torch.manual_seed(0)
    enc = build_zipformer_encoder(ZipformerConfig(preset="tiny", pos_dropout=0.0))
    x, lengths = torch.randn(2, 100, 80), torch.tensor([100, 60])
    enc.eval()
    with torch.inference_mode():
        enc(x, lengths)
    enc.train()
    enc(x, lengths)[0].sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
