"""GPU throughput of every audio encoder and Zipformer preset: forward and forward+backward.

Run on a GPU machine (not part of the CPU test or benchmark runs)::

    python benchmarks/gpu_encoders.py --out encoders.json

Random 80-bin features of 10 s clips (1000 frames), batch 32, bf16 autocast, eval-mode
forward under inference_mode and train-mode forward + backward of the frames' mean; each
figure is the mean of 10 timed calls after 3 warm-ups. Clips/s and seconds of audio per second.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from alp_models.audio.conformer import build_conformer_encoder
from alp_models.audio.patch_transformer import build_patch_transformer_encoder
from alp_models.audio.transformer import TransformerAudioEncoder
from alp_models.audio.zipformer import build_zipformer_encoder
from alp_models.configs import (
    ConformerConfig,
    PatchTransformerConfig,
    TransformerAudioEncoderConfig,
    ZipformerConfig,
)

ENCODERS = {
    "transformer (default)": lambda: TransformerAudioEncoder(TransformerAudioEncoderConfig(
        d_model=128, num_layers=3, num_heads=4, ffn_dim=512)),
    "transformer d512 x12": lambda: TransformerAudioEncoder(TransformerAudioEncoderConfig(
        d_model=512, num_layers=12, num_heads=8, ffn_dim=2048)),
    "zipformer tiny": lambda: build_zipformer_encoder(ZipformerConfig(preset="tiny")),
    "zipformer small": lambda: build_zipformer_encoder(ZipformerConfig(preset="small")),
    "zipformer base": lambda: build_zipformer_encoder(ZipformerConfig(preset="base")),
    "conformer d256 x12": lambda: build_conformer_encoder(ConformerConfig(
        d_model=256, num_layers=12, num_heads=4, ffn_dim=1024)),
    "patch-transformer d384 x6": lambda: build_patch_transformer_encoder(
        PatchTransformerConfig(d_model=384, num_layers=6, num_heads=6, ffn_dim=1536)),
}


def timed(fn, steps: int = 10) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="encoders.json")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device, results = torch.device("cuda"), []
    x = torch.randn(args.batch, 1000, 80, device=device)
    lengths = torch.full((args.batch,), 1000, device=device)
    for name, build in ENCODERS.items():
        try:
            torch.manual_seed(0)
            enc = build().to(device)

            def forward(enc=enc) -> None:
                enc.eval()
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                    enc(x, lengths)

            def train(enc=enc) -> None:
                enc.train()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    frames, _ = enc(x, lengths)
                frames.float().mean().backward()

            fwd, bwd = timed(forward), timed(train)
            row = {"encoder": name, "params_m": round(sum(p.numel() for p in enc.parameters())
                                                      / 1e6, 2),
                   "fwd_clips_s": round(args.batch / fwd, 1),
                   "fwd_audio_s_per_s": round(args.batch * 10 / fwd),
                   "train_clips_s": round(args.batch / bwd, 1),
                   "train_audio_s_per_s": round(args.batch * 10 / bwd),
                   "device": torch.cuda.get_device_name()}
        except Exception as err:  # one encoder must not cost the others
            row = {"encoder": name, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps(row), flush=True)
        results.append(row)
        torch.cuda.empty_cache()
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
