"""GPU training-step throughput and MFU of the default model and the Zipformer base preset.

Run on a GPU machine (it is not part of the CPU test or benchmark runs)::

    python benchmarks/gpu_train_step.py --tokenizer TOKENIZER_DIR --out results.json
    python benchmarks/gpu_train_step.py --cases zipformer-base:240:bf16:compile --profile P.txt

``--cases`` takes ``all`` (eager), ``compile`` (compiled) or a comma-separated list of
``MODEL:BATCH:PRECISION[:compile[=MODE]]`` (MODE a ``torch.compile`` mode, e.g.
``reduce-overhead`` for CUDA graphs; ``compile-regional[=MODE]`` compiles each layer alone
as ``train.compile=regional`` does, far faster for deep models) with MODEL one of
``default``, ``zipformer-base``, ``zipformer-base-cl`` (its depthwise convolutions over a
channels-last view: an experiment) and ``transformer-large`` (a d1024 x 24 pre-norm
Transformer encoder, 0.3 B parameters: a matrix-product-bound model that shows what the step
path itself reaches). ``--profile FILE`` appends each case's heaviest kernels over three
profiled steps; ``--device cpu`` runs the same steps on the CPU (a smoke run of the script:
tests/benchmarks/test_gpu_scripts.py). Compiled cases report ``first_compiled_step_s``.

Each case trains the audio encoder against a text tower with InfoNCE through ALP's own step
path (``TrainTask`` + ``SingleEngine``: AdamW, clipping, bf16 autocast), on random 80-bin
features of 10 s clips (1000 frames) and real tokenised captions. FLOPs per step come from
``torch.utils.flop_counter`` (matrix products, convolutions and attention); MFU = FLOPs /
step time / the GPU's dense bf16 peak (989 TFLOP/s for H100 and H200).
"""

from __future__ import annotations

import argparse
import json
import time
import types
from pathlib import Path

import torch

from alp_models.audio.transformer import TransformerAudioEncoder
from alp_models.audio.zipformer import build_zipformer_encoder
from alp_models.audio.zipformer.layers import ConvolutionModule
from alp_models.configs import (
    BertTextEncoderConfig,
    ProjectionConfig,
    TransformerAudioEncoderConfig,
    ZipformerConfig,
)
from alp_models.text.bert import build_bert_text_encoder
from alp_models.two_tower import AudioTextModel
from alp_objectives import InfoNCEConfig, InfoNCELoss
from alp_train.distributed import DistInfo
from alp_train.engines.torch_engines import SingleEngine
from alp_train.flops import count_step_flops, peak_tflops
from alp_train.optim.groups import optimizer_groups
from alp_train.optim.schedules import build_adamw, build_constant
from alp_train.task import TrainTask

MODELS = ("default", "zipformer-base", "zipformer-base-cl", "transformer-large")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CAPTIONS = ["a dog barks loudly in the distance while rain falls on a tin roof",
            "speech, female, slow, rising intonation", "piano, chords, c major, fast tempo"]


def build(case: str, tokenizer: str) -> AudioTextModel:
    if case == "default":  # the embedded default's towers
        audio = TransformerAudioEncoder(TransformerAudioEncoderConfig(
            d_model=128, num_layers=3, num_heads=4, ffn_dim=512, max_positions=4096))
        text = build_bert_text_encoder(BertTextEncoderConfig(
            hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, pooling="mean",
            tokenizer=tokenizer))
        return AudioTextModel(audio, text, ProjectionConfig(embed_dim=128))
    if case == "transformer-large":  # matrix products dominate: the step path's own ceiling
        audio = TransformerAudioEncoder(TransformerAudioEncoderConfig(
            d_model=1024, num_layers=24, num_heads=16, ffn_dim=4096, max_positions=4096))
    elif case in ("zipformer-base", "zipformer-base-cl"):  # the study's encoder
        audio = build_zipformer_encoder(ZipformerConfig(preset="base"))
        if case == "zipformer-base-cl":
            use_channels_last_depthwise(audio)
    else:
        raise ValueError(f"unknown model {case!r}: one of {', '.join(MODELS)}")
    # with a BERT-base-sized text tower, 1024-d space
    text = build_bert_text_encoder(BertTextEncoderConfig(
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, pooling="cls",
        max_tokens=30, tokenizer=tokenizer))
    return AudioTextModel(audio, text, ProjectionConfig(embed_dim=1024))


def channels_last_depthwise(self: ConvolutionModule, x: torch.Tensor) -> torch.Tensor:
    """An experiment (model ``zipformer-base-cl``): the depthwise convolution as a (1, K)
    conv2d over a channels-last view of (B, T, C), which PyTorch gives to cuDNN, where the
    model's conv1d over the transposed frames runs PyTorch's own depthwise kernels (17 % of
    the compiled step's GPU time on an H200). Same weights, same sums."""
    conv = self.depthwise_conv
    y = torch.nn.functional.conv2d(
        x.transpose(1, 2).unsqueeze(2), conv.weight.unsqueeze(2), conv.bias,
        padding=(0, conv.kernel_size[0] // 2), groups=conv.groups)
    return y.squeeze(2).transpose(1, 2)


def use_channels_last_depthwise(encoder: torch.nn.Module) -> None:
    """Give every Zipformer convolution module of ``encoder`` :func:`channels_last_depthwise`."""
    for module in encoder.modules():
        if isinstance(module, ConvolutionModule):
            module.depthwise = types.MethodType(channels_last_depthwise, module)  # type: ignore[method-assign]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(case: str, batch: int, frames: int, precision: str, tokenizer: str,
            compile: str | None = None, steps: int = 10, device: str = "cuda",
            profile: Path | None = None, phase: list[str] | None = None) -> dict:
    """One case's figures; ``phase[0]`` names the stage reached (for the error report)."""
    phase = phase if phase is not None else [""]
    torch.manual_seed(0)
    phase[0] = "build"
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    model = build(case, tokenizer)
    task = TrainTask(model, InfoNCELoss(InfoNCEConfig()))
    cfg = types.SimpleNamespace(precision=precision, grad_accum_steps=1, grad_clip=1.0)
    engine = SingleEngine(None, cfg, DistInfo(device=dev))
    engine.setup(task, lambda m: build_adamw(
        types.SimpleNamespace(weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, fused=cuda),
        optimizer_groups({"task": m}, 1e-4), 1e-4),
        lambda o: build_constant(types.SimpleNamespace(warmup_steps=0), o))
    captions = [CAPTIONS[i % 3] for i in range(batch)]
    data = {"ids": [f"clip-{i}" for i in range(batch)],
            "features": torch.randn(batch, frames, 80),
            "feature_lengths": torch.full((batch,), frames), **model.tokenizer(captions)}

    phase[0] = "eager steps"

    losses: list[torch.Tensor] = []

    def step() -> None:
        out = engine.forward(task.prepare(data, dev))
        losses[:] = [out.loss.detach()]
        engine.backward(out.loss)
        engine.step(True)

    for _ in range(3):
        step()
    _sync(dev)
    flops = count_step_flops(step)  # counted eagerly: compiling does not change the work
    dynamo = compile_s = None
    if compile is not None:
        from torch._dynamo.utils import counters

        counters.clear()
        phase[0] = "compiled steps"
        # what train.compile=true (or regional) does in the engines, there with the default mode
        regional = compile.startswith("regional")
        mode = (compile.partition("+")[2] or "default") if regional else compile
        task.compile_parts(regional=regional, **({} if mode == "default" else {"mode": mode}))
        start = time.perf_counter()
        step()
        _sync(dev)
        compile_s = time.perf_counter() - start  # the first compiled step: mostly compiling
        for _ in range(3):
            step()
        # one graph per compiled part and no break is what the encoders are built for
        dynamo = {"graphs": int(counters["stats"]["unique_graphs"]),
                  "graph_breaks": int(sum(counters["graph_break"].values()))}
    _sync(dev)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(dev)
    seconds = (time.perf_counter() - t0) / steps
    peak = peak_tflops(dev)
    result = {"case": case, "precision": precision, "compile": compile, "batch": batch,
              "frames": frames,
              "parameters_m": round(sum(p.numel() for p in task.parameters()) / 1e6, 2),
              "step_ms": round(seconds * 1000, 1), "samples_per_s": round(batch / seconds, 1),
              "audio_hours_per_s": round(batch * frames / 100 / 3600 / seconds, 3),
              "tflops_per_step": round(flops / 1e12, 3),
              "achieved_tflops": round(flops / seconds / 1e12, 1),
              "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
              "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
              "last_loss": round(float(losses[0]), 4),  # InfoNCE starts near ln(batch)
              "dynamo": dynamo,
              "first_compiled_step_s": None if compile_s is None else round(compile_s, 1),
              "device": torch.cuda.get_device_name(dev) if cuda else "cpu"}
    if profile is not None:
        _profile(step, dev, profile, result)
    return result


def _profile(step, device: torch.device, path: Path, result: dict) -> None:
    """Append the case's heaviest kernels over three steps to ``path``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(3):
            step()
        _sync(device)
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=30, max_name_column_width=70)
    head = {k: result[k] for k in ("case", "batch", "precision", "compile", "step_ms", "mfu")}
    with path.open("a") as fh:
        fh.write(f"\n### {json.dumps(head)} (3 steps)\n{table}\n")


PRESETS = {
    "all": ["default:64:fp32", "default:64:bf16", "default:256:bf16", "zipformer-base:60:fp32",
            "zipformer-base:60:bf16"],
    # the comparable case of the last GPU run first, then the step path's own ceiling: a run
    # stopped at its time limit keeps the cases that matter most
    "compile": [
        "zipformer-base:120:bf16:compile",
        "transformer-large:128:bf16:compile",
        "default:256:bf16:compile",
        "zipformer-base:240:bf16:compile",
    ],
}


def parse_cases(text: str) -> list[tuple[str, int, str, str | None]]:
    """``all``, ``compile`` or ``MODEL:BATCH:PRECISION[:compile[=MODE]],...`` → case tuples
    (model, batch, precision, compile mode or None for eager; ``regional`` or
    ``regional+MODE`` for a regional compile)."""
    specs = PRESETS.get(text) or [t for t in text.split(",") if t]
    compiled = {None: None, "compile": "default", **{f"compile={m}": m for m in COMPILE_MODES},
                "compile-regional": "regional",
                **{f"compile-regional={m}": f"regional+{m}" for m in COMPILE_MODES}}
    cases = []
    for spec in specs:
        parts = spec.split(":")
        last = parts[3] if len(parts) == 4 else None
        if len(parts) not in (3, 4) or parts[0] not in MODELS or not parts[1].isdigit() \
                or parts[2] not in ("fp32", "bf16", "fp16") or last not in compiled:
            raise SystemExit(
                f"--cases: {spec!r} is not MODEL:BATCH:PRECISION[:compile[-regional][=MODE]] "
                "(MODEL one "
                f"of {', '.join(MODELS)}; precision fp32, bf16 or fp16; MODE one of "
                f"{', '.join(COMPILE_MODES)}), 'all' or 'compile'")
        cases.append((parts[0], int(parts[1]), parts[2], compiled[last]))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--cases", default="all",
                        help="'all', 'compile' or "
                        "MODEL:BATCH:PRECISION[:compile[-regional][=MODE]],...")
    parser.add_argument("--frames", type=int, default=1000, help="frames per clip (10 ms hop)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--profile", type=Path, default=None,
                        help="append each case's heaviest kernels (3 profiled steps) to this file")
    args = parser.parse_args()
    cases = parse_cases(args.cases)
    results = []
    for model, batch, precision, compiled in cases:
        phase = [""]
        try:
            results.append(measure(model, batch, args.frames, precision, args.tokenizer,
                                   compile=compiled, steps=args.steps, device=args.device,
                                   profile=args.profile, phase=phase))
        except Exception as err:  # report and go on: one case must not cost the others
            results.append({"case": model, "precision": precision, "batch": batch,
                            "compile": compiled, "failed_in": phase[0],
                            "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(results[-1]), flush=True)
        # written after every case: a run stopped at its time limit keeps what it measured
        Path(args.out).write_text(json.dumps(results, indent=2))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        torch._dynamo.reset()  # compiled graphs of one case must not count in the next


if __name__ == "__main__":
    main()
