"""Contrastive gradient caching gives exactly the gradients of one big batch (float64, CPU)."""

from __future__ import annotations

import types
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alp_objectives.configs import InfoNCEConfig
from alp_objectives.contrastive import InfoNCELoss
from alp_train.distributed import DistInfo
from alp_train.engines.torch_engines import SingleEngine, SingleEngineConfig
from alp_train.gradcache import chunks, contrastive_grad_cache
from alp_train.task import TrainTask

BATCH, FRAMES, MELS, VOCAB, TOKENS = 8, 5, 6, 11, 4


class TinyTwoTower(nn.Module):
    """The model contract in miniature: features/input_ids -> unit-norm audio/text embeddings."""

    def __init__(self, dropout: float = 0.0, embed: int = 3) -> None:
        super().__init__()
        self.audio = nn.Sequential(nn.Linear(MELS, 7), nn.Tanh(), nn.Dropout(dropout),
                                   nn.Linear(7, embed))
        self.tokens = nn.Embedding(VOCAB, 5)
        self.text_drop = nn.Dropout(dropout)
        self.text = nn.Linear(5, embed)

    def forward(self, step: dict[str, Any]) -> dict[str, torch.Tensor]:
        frames = self.audio(step["features"]).mean(dim=1)
        words = self.text_drop(self.tokens(step["input_ids"])).mean(dim=1)
        return {"audio_embeds": F.normalize(frames, dim=-1),
                "text_embeds": F.normalize(self.text(words), dim=-1)}


def make_step(seed: int = 1) -> dict[str, Any]:
    """A prepared step of BATCH clips (float64 features), two of them sharing a clip id."""
    gen = torch.Generator().manual_seed(seed)
    ids = [f"clip{i}" for i in range(BATCH)]
    ids[5] = "clip2"  # two captions of one clip: positives beyond the diagonal
    return {"ids": ids, "features": torch.randn(BATCH, FRAMES, MELS, generator=gen,
                                                dtype=torch.float64),
            "feature_lengths": torch.full((BATCH,), FRAMES),
            "input_ids": torch.randint(0, VOCAB, (BATCH, TOKENS), generator=gen),
            "attention_mask": torch.ones(BATCH, TOKENS, dtype=torch.long)}


def make_task(dropout: float = 0.0, learnable: bool = False) -> TrainTask:
    torch.manual_seed(3)
    objective = InfoNCELoss(InfoNCEConfig(temperature=0.2, learnable_temperature=learnable))
    return TrainTask(TinyTwoTower(dropout), objective).double()


def make_engine(task: TrainTask) -> SingleEngine:
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=None)
    engine = SingleEngine(SingleEngineConfig(), train, DistInfo())
    engine.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=0.1),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    return engine


def grads(task: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in task.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        out[name] = p.grad.detach().clone()
    return out


def full_batch(task: TrainTask, step: dict[str, Any]) -> tuple[float, dict[str, torch.Tensor]]:
    task.zero_grad(set_to_none=True)
    prepared = task.prepare(step, torch.device("cpu"))
    out = task(prepared)
    out.loss.backward()
    return out.loss.item(), grads(task)


def cached(task: TrainTask, engine: SingleEngine, step: dict[str, Any], chunk: int
           ) -> tuple[float, dict[str, torch.Tensor]]:
    task.zero_grad(set_to_none=True)
    prepared = task.prepare(step, torch.device("cpu"))
    out = contrastive_grad_cache(engine, task, prepared, chunk, boundary=True)
    assert out.loss.dtype == torch.float64  # float64 embeddings are not downcast
    return out.loss.item(), grads(task)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def test_chunks_slice_batched_values_only():
    step = make_step()
    step["scalar"] = torch.tensor(2.0)
    parts = list(chunks(step, 3))
    assert [len(p["ids"]) for p in parts] == [3, 3, 2]
    assert parts[1]["ids"] == step["ids"][3:6]
    torch.testing.assert_close(parts[2]["features"], step["features"][6:])
    assert all(p["scalar"] is step["scalar"] for p in parts)


@pytest.mark.parametrize("learnable", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_grad_cache_equals_one_big_batch(chunk: int, learnable: bool):
    task = make_task(learnable=learnable)
    engine = make_engine(task)
    step = make_step()
    loss_full, grads_full = full_batch(task, step)
    loss_cached, grads_cached = cached(task, engine, step, chunk)
    assert loss_cached == pytest.approx(loss_full, abs=1e-10)
    # the gradients are not trivially zero: the comparison has something to compare
    assert all(g.abs().max() > 1e-4 for g in grads_full.values())
    if learnable:
        assert "objective.log_logit_scale" in grads_full
    assert_same(grads_cached, grads_full, atol=1e-5)


def test_grad_cache_differs_from_plain_accumulation():
    """Sanity: per-chunk losses (fewer negatives) give other gradients, so the test above
    would catch an implementation that just accumulated chunk losses."""
    task = make_task()
    step = make_step()
    _, grads_full = full_batch(task, step)
    task.zero_grad(set_to_none=True)
    prepared = task.prepare(step, torch.device("cpu"))
    for part in chunks(prepared, 4):
        (task(part).loss * len(part["ids"]) / BATCH).backward()
    accumulated = grads(task)
    assert max((accumulated[k] - grads_full[k]).abs().max().item() for k in grads_full) > 1e-3


def test_grad_cache_keeps_the_global_rng_stream_as_the_full_pass():
    """After gradient caching the torch RNG is where one pass over the chunks leaves it."""
    task = make_task(dropout=0.3)
    engine = make_engine(task)
    step = make_step()
    torch.manual_seed(11)
    cached(task, engine, step, 4)
    after_cache = torch.rand(4)
    torch.manual_seed(11)
    with torch.no_grad():
        task.model(step)
    after_full = torch.rand(4)
    torch.testing.assert_close(after_cache, after_full, atol=0, rtol=0)


def test_grad_cache_replays_dropout():
    """With dropout the replay must draw the masks of the embedding pass: the result equals
    one big batch whose chunks use those masks, and is reproducible from one RNG state."""
    task = make_task(dropout=0.3)
    engine = make_engine(task)
    step = make_step()
    torch.manual_seed(5)
    loss_a, grads_a = cached(task, engine, step, 4)
    torch.manual_seed(5)
    loss_b, grads_b = cached(task, engine, step, 4)
    assert loss_a == loss_b
    assert_same(grads_a, grads_b, atol=0)

    # reference: the same masks (chunk by chunk from the same RNG state), with a graph, one loss
    torch.manual_seed(5)
    task.zero_grad(set_to_none=True)
    prepared = task.prepare(step, torch.device("cpu"))
    outs = [task.model(part) for part in chunks(prepared, 4)]
    joined = {k: torch.cat([o[k] for o in outs]) for k in ("audio_embeds", "text_embeds")}
    reference = task.objective.compute({**prepared, **joined})
    reference.loss.backward()
    assert loss_a == pytest.approx(reference.loss.item(), abs=1e-10)
    assert_same(grads_a, grads(task), atol=1e-5)

    # and the masks matter: another RNG state gives other gradients
    torch.manual_seed(6)
    _, grads_c = cached(task, engine, step, 4)
    assert max((grads_c[k] - grads_a[k]).abs().max().item() for k in grads_a) > 1e-4


def test_models_with_batch_statistics_are_refused():
    from alp_core import ConfigError
    from alp_models.audio.conformer import ConformerAudioEncoder
    from alp_models.audio.transformer import TransformerAudioEncoder
    from alp_models.configs import ConformerConfig, TransformerAudioEncoderConfig
    from alp_train.gradcache import check_per_sample

    # chunked, BatchNorm normalises each chunk by its own statistics: not the batch's
    with pytest.raises(ConfigError, match=r"conformer_layers\.0\..* normalise over the batch"):
        check_per_sample(ConformerAudioEncoder(ConformerConfig(num_layers=1)))
    check_per_sample(TransformerAudioEncoder(TransformerAudioEncoderConfig(num_layers=1)))
