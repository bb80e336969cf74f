"""Training-step throughput of the default model, and the engine's overhead over bare PyTorch.

``test_train_step``: one step per objective of the embedded default run through the recipe's
path (``TrainTask.prepare`` → ``engine.forward`` → ``engine.backward`` → ``engine.step``:
clipping, AdamW, schedule), in samples/s. ``test_bare_step``: the same model, batch and
optimizer in a hand-written loop (forward, loss, backward, clip, step) — the engine overhead
is the ratio of the two means (``benchmarks/summary.py`` prints it; the goal is <= 3 %).

Run: make bench   (or: .venv/bin/python -m pytest benchmarks -k step --benchmark-only)
"""

from __future__ import annotations

import pytest
import torch

from alp_train.config import resolve_run
from alp_train.distributed import DistInfo
from alp_train.optim.groups import optimizer_groups
from alp_train.recipe import build_engine, setup_model
from alp_train.task import TrainTask, clip_ids

CAPTIONS = ["a dog barks loudly in the distance while rain falls on a tin roof",
            "speech, female, slow, rising intonation", "piano, chords, c major, fast tempo"]


def _setup(objective: str, batch_size: int):
    torch.manual_seed(0)
    resolved = resolve_run({"objective": {"name": objective}})
    model, loss_fn = setup_model(resolved)
    task = TrainTask(model, loss_fn).train()
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
    return resolved, task, batch, frames


def _optimizer(resolved, module):
    groups = optimizer_groups({"task": module}, 1e-3)
    return resolved.optimizer.build(param_groups=groups, lr=1e-3)


@pytest.mark.parametrize("objective", ["infonce", "captioning", "coca"])
@pytest.mark.parametrize("batch_size", [16, 32])
def test_train_step(benchmark, batch_size, objective):
    resolved, task, batch, frames = _setup(objective, batch_size)
    engine = build_engine(resolved, DistInfo())
    engine.setup(task, lambda m: _optimizer(resolved, m),
                 lambda o: resolved.schedule.build(optimizer=o, total_steps=100,
                                                   steps_per_epoch=10))

    def step() -> float:
        out = engine.forward(task.prepare(dict(batch), engine.device))
        engine.backward(out.loss)
        engine.step(True)
        return float(out.metrics["loss"])

    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    benchmark.extra_info.update(samples_per_s=round(batch_size / benchmark.stats.stats.mean, 1),
                                frames=frames, batch_size=batch_size, path="engine")


@pytest.mark.parametrize("batch_size", [16, 32])
def test_bare_step(benchmark, batch_size):
    """InfoNCE through a hand-written PyTorch loop on the same model, batch and optimizer."""
    resolved, task, batch, frames = _setup("infonce", batch_size)
    model, loss_fn = task.model, task.objective
    optimizer = _optimizer(resolved, task)
    ids = clip_ids(batch["ids"], torch.device("cpu"))

    def step() -> float:
        out = model(batch)
        loss = loss_fn(out["audio_embeds"], out["text_embeds"], ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    benchmark.pedantic(step, rounds=8, warmup_rounds=2)
    benchmark.extra_info.update(samples_per_s=round(batch_size / benchmark.stats.stats.mean, 1),
                                frames=frames, batch_size=batch_size, path="bare")


@pytest.mark.parametrize("batch_size", [16, 32])
def test_engine_overhead_interleaved(benchmark, batch_size):
    """The engine step and the bare loop on one model, alternating, 20 rounds each: machine
    drift hits both alike. ``overhead_pct`` = median engine / median bare - 1 (goal <= 3)."""
    import statistics
    import time

    resolved, task, batch, _ = _setup("infonce", batch_size)
    engine = build_engine(resolved, DistInfo())
    engine.setup(task, lambda m: _optimizer(resolved, m),
                 lambda o: resolved.schedule.build(optimizer=o, total_steps=100,
                                                   steps_per_epoch=10))
    bare_opt = _optimizer(resolved, task)
    ids = clip_ids(batch["ids"], torch.device("cpu"))

    def engine_step() -> None:
        out = engine.forward(task.prepare(dict(batch), engine.device))
        engine.backward(out.loss)
        engine.step(True)

    def bare_step() -> None:
        out = task.model(batch)
        loss = task.objective(out["audio_embeds"], out["text_embeds"], ids).loss
        bare_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(task.parameters(), 1.0)
        bare_opt.step()

    times: dict[str, list[float]] = {"engine": [], "bare": []}

    def rounds() -> None:
        for i in range(20):
            order = (("engine", engine_step), ("bare", bare_step))
            for name, fn in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)

    engine_step(), bare_step()
    benchmark.pedantic(rounds, rounds=1, iterations=1)
    med = {k: statistics.median(v) for k, v in times.items()}
    benchmark.extra_info.update(
        engine_ms=round(med["engine"] * 1000, 1), bare_ms=round(med["bare"] * 1000, 1),
        overhead_pct=round(100 * (med["engine"] / med["bare"] - 1), 2), batch_size=batch_size)
