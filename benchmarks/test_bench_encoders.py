"""Audio-encoder throughput on CPU: forward (eval, no grad) and forward + backward (train).

The ``transformer``, ``conformer`` and ``patch-transformer`` encoders at their defaults, each
``zipformer`` preset, and ``hf-audio`` AST / Whisper-tiny (random weights) over the same
batch of short clips; ``extra_info`` holds clips/s and seconds of audio per second.

Run: .venv/bin/python -m pytest benchmarks/test_bench_encoders.py --benchmark-only
"""

from __future__ import annotations

import pytest
import torch

# (name, config overrides, batch size, clip seconds): base gets a smaller, shorter batch.
CASES = [
    ("transformer", {}, 8, 4.0),
    ("zipformer-tiny", {"preset": "tiny"}, 8, 4.0),
    ("zipformer-small", {"preset": "small"}, 8, 4.0),
    ("zipformer-base", {"preset": "base"}, 2, 2.0),
    ("conformer", {}, 8, 4.0),
    ("patch-transformer", {}, 8, 4.0),
    # AST-base widths over a 4 s window; Whisper-tiny widths always read a 30 s window.
    ("hf-ast", {"model_type": "ast", "config": {"max_length": 400}}, 8, 4.0),
    ("hf-whisper-tiny", {"model_type": "whisper", "config": {
        "d_model": 384, "encoder_layers": 4, "encoder_attention_heads": 6,
        "encoder_ffn_dim": 1536}}, 2, 4.0),
]


def _encoder(name: str, overrides: dict) -> torch.nn.Module:
    if name == "transformer":
        from alp_models.audio.transformer import build_transformer_audio_encoder
        from alp_models.configs import TransformerAudioEncoderConfig

        return build_transformer_audio_encoder(TransformerAudioEncoderConfig(**overrides))
    if not name.startswith("zipformer"):
        from alp_core import new_plugin_manager

        registered = "hf-audio" if name.startswith("hf-") else name
        return new_plugin_manager().get("audio_encoder", registered).build(overrides)
    from alp_models.audio.zipformer import build_zipformer_encoder
    from alp_models.configs import ZipformerConfig

    return build_zipformer_encoder(ZipformerConfig(**overrides))


@pytest.mark.parametrize("mode", ["forward", "forward_backward"])
@pytest.mark.parametrize(("name", "overrides", "batch_size", "seconds"), CASES,
                         ids=[c[0] for c in CASES])
def test_encoder_throughput(benchmark, name, overrides, batch_size, seconds, mode):
    torch.manual_seed(0)
    encoder = _encoder(name, overrides)
    frames = int(seconds * 100)
    features = torch.randn(batch_size, frames, 80)
    lengths = torch.full((batch_size,), frames)

    if mode == "forward":
        encoder.eval()

        def step() -> None:
            with torch.no_grad():
                encoder(features, lengths)
    else:
        encoder.train()

        def step() -> None:
            out, _ = encoder(features, lengths)
            out.pow(2).mean().backward()
            encoder.zero_grad(set_to_none=True)

    benchmark.pedantic(step, rounds=3, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(
        clips_per_s=round(batch_size / mean, 2),
        audio_s_per_s=round(batch_size * seconds / mean, 1),
        batch_size=batch_size, clip_seconds=seconds,
        parameters=sum(p.numel() for p in encoder.parameters()),
    )
