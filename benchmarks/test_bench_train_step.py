"""Training-step throughput (forward + backward + AdamW) of the default model, in samples/s.

Run: make bench   (or: .venv/bin/python -m pytest benchmarks -k train_step --benchmark-only)
"""

from __future__ import annotations

import pytest
import torch

from alp_cli.config import resolve_run
from alp_cli.engine.schedule import build_optimizer
from alp_models.configs import ProjectionConfig
from alp_models.two_tower import AudioTextModel


@pytest.mark.parametrize("batch_size", [16, 32])
def test_train_step(benchmark, batch_size):
    torch.manual_seed(0)
    resolved = resolve_run({})
    cfg = resolved.config
    text = resolved.text_encoder.build()
    model = AudioTextModel(resolved.audio_encoder.build(), text,
                           ProjectionConfig(embed_dim=cfg.model.embed_dim)).train()
    objective = resolved.objective.build()
    optimizer, _ = build_optimizer(
        {"model": model, "objective": objective}, 1e-3, 0.01, 100, 0.0)
    frames = int(cfg.data.train_max_seconds * 100)
    batch = {"features": torch.randn(batch_size, frames, 80),
             "feature_lengths": torch.full((batch_size,), frames),
             **text.tokenizer([f"a dog barks {i} times" for i in range(batch_size)])}

    def step() -> float:
        out = model(batch)
        loss = objective(out["audio_embeds"], out["text_embeds"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(samples_per_s=round(batch_size / benchmark.stats.stats.mean, 1),
                                frames=frames, batch_size=batch_size)
