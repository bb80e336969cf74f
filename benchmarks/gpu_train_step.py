"""GPU training-step throughput and MFU of the default model and the Zipformer base preset.

Run on a GPU machine (it is not part of the CPU test or benchmark runs)::

    python benchmarks/gpu_train_step.py --tokenizer TOKENIZER_DIR --out results.json

Each case trains the audio encoder against a text tower with InfoNCE through ALP's own step
path (``TrainTask`` + ``SingleEngine``: AdamW, clipping, bf16 autocast), on random 80-bin
features of 10 s clips (1000 frames) and real tokenised captions. FLOPs per step come from
``torch.utils.flop_counter`` (matrix products and convolutions); MFU = FLOPs / step time /
the GPU's dense bf16 peak (989 TFLOP/s for H100 and H200).
"""

from __future__ import annotations

import argparse
import json
import time
import types

import torch

from alp_models.audio.transformer import TransformerAudioEncoder
from alp_models.audio.zipformer import build_zipformer_encoder
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
    # the study's encoder (Zipformer base) with a BERT-base-sized text tower, 1024-d space
    audio = build_zipformer_encoder(ZipformerConfig(preset="base"))
    text = build_bert_text_encoder(BertTextEncoderConfig(
        hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, pooling="cls",
        max_tokens=30, tokenizer=tokenizer))
    return AudioTextModel(audio, text, ProjectionConfig(embed_dim=1024))


def measure(case: str, batch: int, frames: int, precision: str, tokenizer: str,
            compile: bool = False, steps: int = 10) -> dict:
    torch.manual_seed(0)
    device = torch.device("cuda")
    model = build(case, tokenizer)
    task = TrainTask(model, InfoNCELoss(InfoNCEConfig()))
    cfg = types.SimpleNamespace(precision=precision, grad_accum_steps=1, grad_clip=1.0)
    engine = SingleEngine(None, cfg, DistInfo(device=device))
    engine.setup(task, lambda m: build_adamw(
        types.SimpleNamespace(weight_decay=0.01, betas=(0.9, 0.999), eps=1e-8, fused=True),
        optimizer_groups({"task": m}, 1e-4), 1e-4),
        lambda o: build_constant(types.SimpleNamespace(warmup_steps=0), o))
    captions = [CAPTIONS[i % 3] for i in range(batch)]
    data = {"ids": [f"clip-{i}" for i in range(batch)],
            "features": torch.randn(batch, frames, 80),
            "feature_lengths": torch.full((batch,), frames), **model.tokenizer(captions)}

    def step() -> None:
        out = engine.forward(task.prepare(data, device))
        engine.backward(out.loss)
        engine.step(True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    flops = count_step_flops(step)  # counted eagerly: compiling does not change the work
    dynamo = None
    if compile:
        from torch._dynamo.utils import counters

        counters.clear()
        task.compile_parts()  # what train.compile=true does in the engines
        for _ in range(4):
            step()
        # one graph per compiled part and no break is what the encoders are built for
        dynamo = {"graphs": int(counters["stats"]["unique_graphs"]),
                  "graph_breaks": int(sum(counters["graph_break"].values()))}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    peak = peak_tflops(device)
    return {"case": case, "precision": precision, "compile": compile, "batch": batch,
            "frames": frames,
            "parameters_m": round(sum(p.numel() for p in task.parameters()) / 1e6, 2),
            "step_ms": round(seconds * 1000, 1), "samples_per_s": round(batch / seconds, 1),
            "audio_hours_per_s": round(batch * frames / 100 / 3600 / seconds, 3),
            "tflops_per_step": round(flops / 1e12, 3),
            "achieved_tflops": round(flops / seconds / 1e12, 1),
            "mfu": round(flops / seconds / (peak * 1e12), 4) if peak else None,
            "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "dynamo": dynamo, "device": torch.cuda.get_device_name()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--cases", default="all", help="'all' or 'compile'")
    args = parser.parse_args()
    cases = [("default", 64, 1000, "fp32", False), ("default", 64, 1000, "bf16", False),
             ("default", 256, 1000, "bf16", False), ("zipformer-base", 60, 1000, "fp32", False),
             ("zipformer-base", 60, 1000, "bf16", False)]
    if args.cases == "compile":
        cases = [("default", 256, 1000, "bf16", True), ("zipformer-base", 60, 1000, "bf16", True),
                 ("zipformer-base", 120, 1000, "bf16", True)]
    results = []
    for case in cases:
        try:
            results.append(measure(*case[:4], tokenizer=args.tokenizer, compile=case[4]))
        except Exception as err:  # report and go on: one case must not cost the others
            results.append({"case": case[0], "precision": case[3], "batch": case[1],
                            "error": f"{type(err).__name__}: {err}"})
        print(json.dumps(results[-1]), flush=True)
        torch.cuda.empty_cache()
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
