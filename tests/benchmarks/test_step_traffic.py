"""benchmarks/step_traffic.py: its counts against hand-derived FLOPs and bytes.

Each expected figure below is worked out from the shapes (what a kernel must read and
write) or taken from torch.profiler's own FLOP count, never from the counter, so a counter
that drops, doubles or invents traffic fails here.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def st():
    path = ROOT / "benchmarks" / "step_traffic.py"
    before = list(sys.path)
    spec = importlib.util.spec_from_file_location("step_traffic", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # it puts benchmarks/ on the path for its imports
    finally:
        sys.path[:] = before
    return module


def _count(st, fn, kernels="gpu"):
    def step(mode):
        mode.phase = "forward"
        out = fn()
        if out is not None and out.requires_grad:
            mode.phase = "backward"
            out.backward(torch.empty_like(out))

    return st.count_step(step, kernels)


def test_linear_forward_and_backward(st):
    b, n_in, n_out, f32 = 4, 16, 8, 4
    lin = torch.nn.Linear(n_in, n_out, device="meta")
    x = torch.empty(b, n_in, device="meta", requires_grad=True)
    mode = _count(st, lambda: lin(x))
    x_b, w_b, bias_b, y_b = b * n_in * f32, n_in * n_out * f32, n_out * f32, b * n_out * f32
    # forward: one addmm reads x, W, bias and writes y
    assert mode.bytes[("forward", "addmm")] == x_b + w_b + bias_b + y_b
    assert mode.flops[("forward", "addmm")] == 2 * b * n_in * n_out
    # backward: dx = dy W (reads dy, W, writes dx), dW = dy^T x (reads dy, x, writes dW),
    # dbias = sum of dy (reads dy, writes dbias)
    assert mode.bytes[("backward", "mm")] == (y_b + w_b + x_b) + (y_b + x_b + w_b)
    assert mode.flops[("backward", "mm")] == 2 * (2 * b * n_in * n_out)
    assert mode.bytes[("backward", "sum")] == y_b + bias_b
    assert sum(mode.calls.values()) == 4


def test_elementwise_inplace_and_views(st):
    n = 1000
    a = torch.empty(10, 100, device="meta")
    c = torch.empty(10, 100, device="meta")

    def fn():
        y = a * c  # reads 2, writes 1
        y.add_(1.0)  # in place: reads and writes the same tensor, counted once, as an add
        z = y.view(100, 10).transpose(0, 1).unsqueeze(0)  # views: nothing moves
        return z.sum()  # reads n, writes one element

    mode = _count(st, fn)
    assert mode.bytes[("forward", "mul")] == 3 * n * 4
    assert mode.bytes[("forward", "add")] == n * 4
    assert mode.bytes[("forward", "sum")] == n * 4 + 4
    assert set(mode.calls) == {("forward", "mul"), ("forward", "add"), ("forward", "sum")}
    assert sum(mode.flops.values()) == 0  # no matrix product, no FLOPs counted for MFU


def test_broadcast_input_counts_the_bytes_behind_it(st):
    big = torch.empty(64, 256, device="meta", dtype=torch.bfloat16)
    row = torch.empty(256, device="meta", dtype=torch.bfloat16)
    mode = _count(st, lambda: big + row.expand(64, 256))
    assert mode.bytes[("forward", "add")] == (64 * 256 * 2) * 2 + 256 * 2


def test_attention_as_the_fused_kernel_and_as_math(st):
    b, h, t, s, d = 2, 4, 50, 60, 16
    q = torch.empty(b, h, t, d, device="meta", requires_grad=True)
    k = torch.empty(b, h, s, d, device="meta", requires_grad=True)
    v = torch.empty(b, h, s, d, device="meta", requires_grad=True)
    attn = lambda: F.scaled_dot_product_attention(q, k, v)  # noqa: E731
    fused = _count(st, attn, "gpu")
    forward = {name: n for (phase, name), n in fused.calls.items() if phase == "forward"}
    assert forward == {"_scaled_dot_product_efficient_attention": 1}
    # QK^T and PV: 2 b h t s d each
    kernel = ("forward", "_scaled_dot_product_efficient_attention")
    assert fused.flops[kernel] == 4 * b * h * t * s * d
    qkv = (b * h * t * d + 2 * b * h * s * d) * 4
    moved = fused.bytes[kernel]
    assert qkv + b * h * t * d * 4 <= moved < qkv + b * h * t * d * 4 + b * h * 64 * 4 + 64
    math = _count(st, attn, "meta")
    # the unfused path writes and reads the t x s scores (several times): far more bytes
    assert sum(math.bytes.values()) > sum(fused.bytes.values()) + 4 * b * h * t * s * 4
    # the same forward products; the fused backward recomputes QK^T (flop_counter's 2.5x the
    # forward, as it counts the GPU kernel), the unfused one reuses the stored scores (2x)
    fwd = 4 * b * h * t * s * d
    assert sum(n for (p, _), n in math.flops.items() if p == "forward") == fwd
    assert sum(n for (p, _), n in math.flops.items() if p == "backward") == 2 * fwd
    assert sum(n for (p, _), n in fused.flops.items() if p == "backward") == 2.5 * fwd


def test_dropout_as_the_gpus_fused_kernel(st):
    n = 4096
    x = torch.empty(n, device="meta", dtype=torch.bfloat16, requires_grad=True)
    drop = torch.nn.Dropout(0.1)
    gpu = _count(st, lambda: drop(x * 1.0), "gpu")
    # forward: reads x, writes the output (bf16) and a bool mask; backward: reads the
    # gradient and the mask, writes the input's gradient
    assert gpu.calls[("forward", "native_dropout")] == 1
    assert gpu.bytes[("forward", "native_dropout")] == n * 2 + n * 2 + n * 1
    assert gpu.bytes[("backward", "native_dropout_backward")] == n * 2 + n * 1 + n * 2
    meta = _count(st, lambda: drop(x * 1.0), "meta")
    dropout_calls = sum(v for (p, op), v in meta.calls.items() if p == "forward" and op != "mul")
    assert dropout_calls >= 2  # a mask drawn and scaled, then multiplied: several calls
    eval_mode = _count(st, lambda: drop.eval()(x * 1.0), "gpu")
    assert not any(op.startswith("native_dropout") for _, op in eval_mode.calls)


def test_bool_mask_becomes_a_bias(st):
    q = torch.empty(2, 2, 8, 4, device="meta")
    mask = torch.ones(2, 1, 1, 8, dtype=torch.bool, device="meta")
    mode = _count(st, lambda: F.scaled_dot_product_attention(q, q, q, attn_mask=mask))
    assert mode.calls[("forward", "where")] == 1
    assert mode.calls[("forward", "_scaled_dot_product_efficient_attention")] == 1


def test_roofline_sums_each_calls_slower_side(st):
    # 1e12 FLOPs at 1000 TFLOP/s = 1 ms; 1e9 bytes at 1 TB/s = 1 ms; 3e9 bytes = 3 ms
    calls = [(1e12, 1e6), (0.0, 3e9), (1e12, 1e9)]
    assert st.roofline_ms(calls, 1000.0, 1.0) == pytest.approx(1 + 3 + 1)


def test_cases_are_checked(st):
    assert st.parse_cases("default:4, zipformer-base:2") == [("default", 4), ("zipformer-base", 2)]
    for bad in ("nope:4", "default", "default:0", "default:x"):
        with pytest.raises(ValueError, match="MODEL:BATCH"):
            st.parse_cases(bad)


def test_script_on_the_default_model(st, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert st.main(["--cases", "default:4,default:8", "--frames", "200", "--out", str(out)]) == 0
    small, large = json.loads(out.read_text())
    assert "| default | 4 | bf16 |" in capsys.readouterr().out
    for row in (small, large):
        for card in ("H100", "H200"):
            # each call at its slower side: at least all FLOPs at peak, at least all bytes
            assert row[f"{card}_floor_ms"] >= max(row[f"{card}_flop_ms"], row[f"{card}_byte_ms"])
            assert 0 < row[f"{card}_mfu_bound"] <= row[f"{card}_mfu_bound_fused"] <= 1
        assert 0 < row["matmul_gb_per_step"] < row["gb_per_step"]
        assert row["calls"] > row["calls_forward"] > 0
    # twice the clips: twice the work, the same calls
    assert large["flops_per_step"] == pytest.approx(2 * small["flops_per_step"], rel=0.02)
    assert large["bytes_per_step"] == pytest.approx(2 * small["bytes_per_step"], rel=0.1)
    assert large["calls"] == small["calls"]
    assert small["H100_floor_ms"] > small["H200_floor_ms"]  # the H200 has more bandwidth


def test_matrix_products_against_the_profilers_own_flop_count(st):
    """A whole Zipformer step on real CPU tensors: the counter's matrix-product calls and
    FLOPs equal those that torch.profiler (its own C++ FLOP formulas) records."""
    from torch.profiler import ProfilerActivity, profile

    from alp_models.audio.zipformer import build_zipformer_encoder
    from alp_models.configs import ZipformerConfig

    torch.manual_seed(0)
    encoder = build_zipformer_encoder(ZipformerConfig(preset="tiny")).eval()
    feats, lengths = torch.randn(3, 120, 80), torch.tensor([120, 100, 77])

    def run():
        out, _ = encoder(feats, lengths)
        out.pow(2).mean().backward()

    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        run()
    names = ("mm", "addmm", "bmm")
    want_flops = {n: sum(e.flops for e in prof.events() if e.name == f"aten::{n}") for n in names}
    want_calls = {n: sum(e.name == f"aten::{n}" for e in prof.events()) for n in names}
    mode = st.count_step(lambda m: run())
    got_flops = {n: sum(v for (_, op), v in mode.flops.items() if op == n) for n in names}
    got_calls = {n: sum(v for (_, op), v in mode.calls.items() if op == n) for n in names}
    assert all(want_calls.values()) and got_calls == want_calls
    assert got_flops == want_flops
