"""Training-step throughput (forward + backward + AdamW) of the default model, in samples/s.

One step per objective of the embedded default run (the model holds what the objective
reads: two towers for contrastive, the caption decoder for captioning, all three for CoCa).

Run: make bench   (or: .venv/bin/python -m pytest benchmarks -k train_step --benchmark-only)
"""

from __future__ import annotations

import pytest
import torch

from alp_cli.config import resolve_run
from alp_cli.engine.schedule import build_optimizer
from alp_cli.engine.single import training_step
from alp_cli.run import build_model

CAPTIONS = ["a dog barks loudly in the distance while rain falls on a tin roof",
            "speech, female, slow, rising intonation", "piano, chords, c major, fast tempo"]


@pytest.mark.parametrize("objective", ["infonce", "captioning", "coca"])
@pytest.mark.parametrize("batch_size", [16, 32])
def test_train_step(benchmark, batch_size, objective):
    torch.manual_seed(0)
    resolved = resolve_run({"objective": {"name": objective}})
    model, loss_fn = build_model(resolved)
    model.train()
    optimizer, _ = build_optimizer(
        {"model": model, "objective": loss_fn}, 1e-3, 0.01, 100, 0.0)
    frames = int(resolved.config.data.train_max_seconds * 100)
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch_size)]
    batch = {"ids": [f"clip-{i}" for i in range(batch_size)],
             "features": torch.randn(batch_size, frames, 80),
             "feature_lengths": torch.full((batch_size,), frames)}
    if model.tokenizer is not None:
        batch.update(model.tokenizer(captions))
    if model.caption_tokenizer is not None:
        tokens = model.caption_tokenizer(captions)
        batch.update(caption_ids=tokens["input_ids"], caption_mask=tokens["attention_mask"])

    def step() -> float:
        out = training_step(model, loss_fn, dict(batch), torch.device("cpu"))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.loss.item()

    benchmark.pedantic(step, rounds=5, warmup_rounds=1)
    benchmark.extra_info.update(samples_per_s=round(batch_size / benchmark.stats.stats.mean, 1),
                                frames=frames, batch_size=batch_size)
