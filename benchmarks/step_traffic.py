"""What one eager training step of an audio encoder asks of a GPU, counted without one.

    python benchmarks/step_traffic.py                       # the GPU cases, bf16, 10 s clips
    python benchmarks/step_traffic.py --cases zipformer-base:120 --precision fp32 --out t.json

The encoder's forward and backward run on PyTorch's ``meta`` device (shapes and dtypes
only, no arithmetic, a few seconds on any CPU), and every ATen call that computes is
counted: its FLOPs (``torch.utils.flop_counter``, as ``gpu_train_step.py`` counts them for
MFU), the bytes of its tensors (each distinct input and output tensor once, so an in-place
op's tensor once although it is read and written: the totals under-count; a broadcast or
sliced input by the bytes behind it), and the call itself, which in eager mode
is at least one kernel launch. Views, reshapes that do not copy and bare allocations count
nothing.

From these a floor under the step's time on a GPU: each call at the roofline, i.e.
``max(FLOPs / peak, bytes / bandwidth)``, summed over calls, as if every kernel ran at its
card's peak arithmetic or memory bandwidth and never waited for a launch. Its MFU is the
most that the eager step could reach on that card (``mfu_bound``); the measured steps of
``gpu_train_step.py`` sit below it, and a compiled step moves fewer bytes (fused kernels)
and launches less. ``calls`` times a launch cost is the other floor of an eager step.

What is counted is the audio encoder (the part whose design sets the step's efficiency;
the text tower is a stock BERT) with a mean-square loss on its output, parameters in the
chosen precision (``bf16`` = weights and activations in bfloat16, a close stand-in for
autocast, which keeps a few reductions in float32 and casts the weights each step). On the
meta device ``scaled_dot_product_attention`` and dropout would be decomposed; here they are
counted as the fused kernels a GPU runs (``kernels="gpu"``, :class:`GpuKernelsMode`): the
memory-efficient attention kernel, the T x T scores never reaching memory, and
``native_dropout``. The Zipformer's own attention is written out (relative positions), so it
is counted as it runs.

Cards: H100 SXM (989 TFLOP/s dense bf16, 3.35 TB/s HBM3) and H200 (989 TFLOP/s, 4.8 TB/s);
float32 matrix products at 67 TFLOP/s (no TF32, PyTorch's default for matmul).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train_step import MODELS, build  # noqa: E402  (the same models as the GPU runs)

CARDS = {  # name: (dense bf16 TFLOP/s, fp32 TFLOP/s without TF32, memory TB/s)
    "H100": (989.0, 67.0, 3.35),
    "H200": (989.0, 67.0, 4.8),
}
DEFAULT_CASES = "default:256,zipformer-base:120,transformer-large:128"

# Calls that compute nothing: views, shape changes that never copy, bare allocations.
_FREE = {
    "_unsafe_view", "view", "_reshape_alias", "alias", "detach", "expand", "permute",
    "transpose", "t", "unsqueeze", "squeeze", "slice", "select", "as_strided", "unbind",
    "split", "split_with_sizes", "chunk", "narrow", "diagonal", "unfold", "view_as_real",
    "view_as_complex", "empty", "empty_like", "empty_strided", "new_empty",
    "new_empty_strided", "lift_fresh", "_local_scalar_dense", "sym_size", "sym_stride",
    "sym_numel", "sym_storage_offset", "is_same_size",
}


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for ``t``: its elements, but no more than the storage behind
    it (a broadcast input is read once, not once per broadcast copy)."""
    elements = t.numel() * t.element_size()
    try:
        storage = t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return elements
    return min(elements, storage)


class TrafficMode(TorchDispatchMode):
    """Counts FLOPs, bytes and calls of every computing ATen call, by op and by phase.

    FLOPs come from ``torch.utils.flop_counter``'s own table (matrix products, convolutions,
    attention), so they are the ones ``FlopCounterMode`` and the MFU figures count.

    ``phase`` (set by the caller: ``"forward"`` / ``"backward"``) and the innermost module
    running (forward only; set by :func:`module_tracker`) label each call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bytes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self.by_module: collections.Counter[str] = collections.Counter()
        self.flops: collections.Counter[tuple[str, str]] = collections.Counter()
        self.per_call: list[tuple[float, int]] = []  # (FLOPs, bytes) in call order
        self.phase = "forward"
        self.module: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name.endswith("_") and not name.endswith("__"):
            name = name[:-1]  # in place: add_ is an add
        if func.is_view or name in _FREE:
            return out
        count = flop_registry.get(func.overloadpacket)
        flops = float(count(*args, **kwargs, out_val=out)) if count is not None else 0.0
        seen: set[int] = set()
        moved = 0
        for t in tree_flatten((args, kwargs, out))[0]:
            if isinstance(t, torch.Tensor) and id(t) not in seen:
                seen.add(id(t))
                moved += tensor_bytes(t)
        key = (self.phase, name)
        self.bytes[key] += moved
        self.flops[key] += flops
        self.calls[key] += 1
        self.per_call.append((flops, moved))
        if self.phase == "forward":
            self.by_module[self.module[-1] if self.module else "(top)"] += moved
        return out


class _FusedAttention(torch.autograd.Function):
    """``scaled_dot_product_attention`` as the GPU's memory-efficient kernel: one call
    forward (q, k, v, bias -> out, log-sum-exp), one backward; on meta tensors."""

    @staticmethod
    def forward(ctx, q, k, v, bias, dropout_p, scale):  # type: ignore[override]
        out, lse, seed, offset = torch.ops.aten._scaled_dot_product_efficient_attention(
            q, k, v, bias, True, dropout_p, False, scale=scale)
        ctx.save_for_backward(q, k, v, bias, out, lse, seed, offset)
        ctx.dropout_p, ctx.scale = dropout_p, scale
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        q, k, v, bias, out, lse, seed, offset = ctx.saved_tensors
        dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
            grad.contiguous(), q, k, v, bias, out, lse, seed, offset, ctx.dropout_p,
            [True, True, True, False], False, scale=ctx.scale)
        return dq, dk, dv, None, None, None


class GpuKernelsMode(TorchFunctionMode):
    """Calls that a GPU runs as one fused kernel but the meta device would decompose:

    - ``F.scaled_dot_product_attention`` -> :class:`_FusedAttention` (a boolean mask becomes
      the additive bias the GPU path makes of it: one small ``where``);
    - ``F.dropout`` in training -> ``native_dropout`` (one kernel writing the output and a
      bool mask; its backward one kernel), as PyTorch dispatches it on CUDA, where the meta
      device would count a float mask drawn, scaled and multiplied in three calls.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func is F.dropout:
            return self._dropout(*args, **kwargs)
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        q, k, v = args[:3]
        mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        dropout_p = kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0)
        if kwargs.get("is_causal") or kwargs.get("enable_gqa"):
            raise NotImplementedError("step_traffic: causal / GQA attention is not modelled")
        bias = None
        if mask is not None:
            if mask.dtype == torch.bool:
                mask = torch.where(mask, 0.0, float("-inf")).to(q.dtype)
            bias = mask.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
        return _FusedAttention.apply(q, k, v, bias, float(dropout_p), kwargs.get("scale"))

    @staticmethod
    def _dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002  (F.dropout's names)
        if not training or p == 0.0:
            return input
        if not 0.0 < p < 1.0:
            return F.dropout(input, p, training, inplace)
        return torch.native_dropout(input, p, True)[0]


class module_tracker:  # noqa: N801  (a context manager, used like a function)
    """Keeps ``mode.module`` = the class names of the modules whose forward is running."""

    def __init__(self, mode: TrafficMode) -> None:
        self.mode = mode
        self.handles: list[Any] = []

    def __enter__(self) -> module_tracker:
        from torch.nn.modules.module import (
            register_module_forward_hook,
            register_module_forward_pre_hook,
        )

        def pre(module: torch.nn.Module, _args: Any) -> None:
            self.mode.module.append(type(module).__name__)

        def post(module: torch.nn.Module, _args: Any, _out: Any) -> None:
            self.mode.module.pop()

        self.handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post)]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()


def roofline_ms(per_call: list[tuple[float, int]], tflops: float, tbps: float) -> float:
    """Sum over calls of max(FLOPs / peak, bytes / bandwidth), in ms."""
    return sum(max(f / (tflops * 1e12), b / (tbps * 1e12)) for f, b in per_call) * 1e3


def count_step(step: Callable[[TrafficMode], None], kernels: str = "gpu") -> TrafficMode:
    """Run ``step(mode)`` under the counters (``step`` sets ``mode.phase`` itself)."""
    traffic = TrafficMode()
    modes: list[Any] = [traffic]
    if kernels == "gpu":
        modes.insert(0, GpuKernelsMode())
    elif kernels != "meta":  # "meta": attention and dropout as the meta device decomposes them
        raise ValueError(f"kernels must be 'gpu' or 'meta', not {kernels!r}")
    for mode in modes:
        mode.__enter__()
    try:
        with module_tracker(traffic):
            step(traffic)
    finally:
        for mode in reversed(modes):
            mode.__exit__(None, None, None)
    return traffic





def measure_case(case: str, batch: int, frames: int, precision: str, tokenizer: str,
                 kernels: str = "gpu", launch_us: float = 5.0) -> dict[str, Any]:
    """One encoder's forward + backward counted on the meta device."""
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be bf16 or fp32, not {precision!r}")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    torch.manual_seed(0)
    encoder = build(case, tokenizer).audio_encoder.to(device="meta", dtype=dtype).train()
    feats = torch.empty(batch, frames, 80, device="meta", dtype=dtype)
    lengths = torch.full((batch,), frames, device="meta", dtype=torch.long)
    params = sum(p.numel() for p in encoder.parameters())

    def step(mode: TrafficMode) -> None:
        mode.phase = "forward"
        out, _ = encoder(feats, lengths)
        loss = out.float().pow(2).mean()
        mode.phase = "backward"
        loss.backward()

    start = time.perf_counter()
    traffic = count_step(step, kernels)
    took = time.perf_counter() - start
    flops = sum(traffic.flops.values())
    total_bytes = sum(traffic.bytes.values())
    calls = sum(traffic.calls.values())
    result: dict[str, Any] = {
        "case": case, "batch": batch, "frames": frames, "precision": precision,
        "kernels": kernels, "parameters_m": round(params / 1e6, 2),
        "flops_per_step": flops, "bytes_per_step": total_bytes,
        "tflops_per_step": round(flops / 1e12, 3), "gb_per_step": round(total_bytes / 1e9, 2),
        "matmul_gb_per_step": round(sum(b for f, b in traffic.per_call if f > 0) / 1e9, 2),
        "flops_per_byte": round(flops / max(total_bytes, 1), 1),
        "calls": calls, "calls_forward": sum(n for (p, _), n in traffic.calls.items()
                                             if p == "forward"),
        "launch_floor_ms": round(calls * launch_us / 1e3, 1), "launch_us": launch_us,
        "count_s": round(took, 2),
    }
    for card, (bf16, fp32, tbps) in CARDS.items():
        peak = bf16 if precision == "bf16" else fp32
        floor = roofline_ms(traffic.per_call, peak, tbps)
        # only the calls with FLOPs (matrix products, convolutions, attention): the floor if
        # every other call were fused away for free, as no compiler gets it
        matmul_floor = roofline_ms([c for c in traffic.per_call if c[0] > 0], peak, tbps)
        result[f"{card}_floor_ms"] = round(floor, 3)
        result[f"{card}_matmul_floor_ms"] = round(matmul_floor, 3)
        result[f"{card}_flop_ms"] = round(flops / (peak * 1e12) * 1e3, 3)
        result[f"{card}_byte_ms"] = round(total_bytes / (tbps * 1e12) * 1e3, 3)
        # MFU against the bf16 peak, as gpu_train_step.py reports it
        result[f"{card}_mfu_bound"] = round(flops / (floor / 1e3) / (bf16 * 1e12), 4) \
            if floor > 0 else None
        result[f"{card}_mfu_bound_fused"] = round(
            flops / (matmul_floor / 1e3) / (bf16 * 1e12), 4) if matmul_floor > 0 else None
    ops: collections.Counter[str] = collections.Counter()
    op_calls: collections.Counter[str] = collections.Counter()
    for (phase, name), moved in traffic.bytes.items():
        ops[f"{phase}:{name}"] = moved
        op_calls[f"{phase}:{name}"] = traffic.calls[(phase, name)]
    result["top_ops_gb"] = {k: [round(v / 1e9, 2), op_calls[k]] for k, v in ops.most_common(15)}
    result["forward_by_module_gb"] = {k: round(v / 1e9, 2)
                                      for k, v in traffic.by_module.most_common(12)}
    return result


def parse_cases(text: str) -> list[tuple[str, int]]:
    cases = []
    for item in filter(None, (c.strip() for c in text.split(","))):
        model, _, batch = item.partition(":")
        if model not in MODELS or not batch.isdigit() or int(batch) < 1:
            raise ValueError(f"case {item!r}: expected MODEL:BATCH with MODEL one of "
                             f"{', '.join(MODELS)} and BATCH a positive integer")
        cases.append((model, int(batch)))
    return cases


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| case | batch | precision | TFLOP | GB | FLOP/byte | calls | H100 floor | "
            "H100 MFU bound | H200 floor | H200 MFU bound |\n"
            "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    lines = [f"| {r['case']} | {r['batch']} | {r['precision']} | {r['tflops_per_step']} | "
             f"{r['gb_per_step']} | {r['flops_per_byte']} | {r['calls']} | "
             f"{r['H100_floor_ms']} ms | {100 * r['H100_mfu_bound']:.1f} % | "
             f"{r['H200_floor_ms']} ms | {100 * r['H200_mfu_bound']:.1f} % |" for r in rows]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=DEFAULT_CASES,
                        help=f"MODEL:BATCH,... (models: {', '.join(MODELS)})")
    parser.add_argument("--frames", type=int, default=1000, help="fbank frames per clip")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--kernels", default="gpu", choices=("gpu", "meta"),
                        help="attention and dropout as a GPU's fused kernels or decomposed")
    parser.add_argument("--launch-us", type=float, default=5.0,
                        help="microseconds per kernel launch, for launch_floor_ms")
    parser.add_argument("--tokenizer", default="bert-uncased")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for model, batch in parse_cases(args.cases):
        row = measure_case(model, batch, args.frames, args.precision, args.tokenizer,
                           args.kernels, args.launch_us)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(markdown(rows))
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
