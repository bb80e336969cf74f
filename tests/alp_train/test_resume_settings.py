"""A resumed engine keeps the optimizer's moments and the schedule's position from the
checkpoint, and the hyper-parameters from the run's (possibly overridden) config."""

from __future__ import annotations

import types

import pytest
import torch
from tests.alp_train.test_loop import batch, make_task

from alp_train.distributed import DistInfo
from alp_train.engines.configs import SingleEngineConfig
from alp_train.engines.torch_engines import SingleEngine
from alp_train.optim.configs import (
    AdamWConfig,
    EdenConfig,
    ScaledAdamConfig,
    WarmupCosineConfig,
)
from alp_train.optim.eden import eden_factor
from alp_train.optim.schedules import (
    build_adamw,
    build_eden,
    build_scaled_adam,
    build_warmup_cosine,
    warmup_cosine,
)


def _engine(kind: str, lr: float, total: int, lr_batches: float = 7500.0) -> SingleEngine:
    task = make_task()
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=None)
    engine = SingleEngine(SingleEngineConfig(), train, DistInfo())
    if kind == "adamw":
        engine.setup(task, lambda m: build_adamw(AdamWConfig(), [{"params": list(
            m.parameters())}], lr), lambda o: build_warmup_cosine(
            WarmupCosineConfig(warmup_fraction=0.25), o, total))
    else:
        engine.setup(task, lambda m: build_scaled_adam(ScaledAdamConfig(), [{"params": list(
            m.parameters())}], lr), lambda o: build_eden(
            EdenConfig(lr_batches=lr_batches, warmup_batches=2), o, steps_per_epoch=4))
    return engine


def _train(engine: SingleEngine, steps: int) -> None:
    for s in range(steps):
        out = engine.forward(engine.task.prepare(batch(4, s), engine.device))
        engine.backward(out.loss)
        engine.step(True)


def _moments(engine: SingleEngine) -> list[torch.Tensor]:
    return [v.clone() for state in engine.optimizer.state.values() for v in state.values()
            if isinstance(v, torch.Tensor) and v.numel() > 1]


@pytest.mark.parametrize("kind", ["adamw", "scaled-adam"])
def test_resume_restores_position_and_moments_but_takes_the_configured_settings(kind, tmp_path):
    first = _engine(kind, lr=0.01, total=8)
    _train(first, 6)
    first.save_state(tmp_path)
    # the same settings: everything as saved, the rate included
    same = _engine(kind, lr=0.01, total=8)
    same.load_state(tmp_path)
    assert same.lr == first.lr and same.schedule.last_epoch == first.schedule.last_epoch == 6
    assert all(a.equal(b) for a, b in zip(_moments(same), _moments(first), strict=True))
    # overridden: a lower peak rate and twice the steps (or another Eden constant)
    changed = _engine(kind, lr=0.004, total=16, lr_batches=3.0)
    changed.load_state(tmp_path)
    assert changed.schedule.last_epoch == 6
    assert all(a.equal(b) for a, b in zip(_moments(changed), _moments(first), strict=True))
    if kind == "adamw":
        expected = 0.004 * warmup_cosine(16, 4)(6)
    else:
        expected = 0.004 * eden_factor(6, 6 / 4, 3.0, 3.5, 2, 0.5)
    assert changed.lr == pytest.approx(expected, rel=1e-12) and expected > 0
    assert changed.optimizer.param_groups[0]["initial_lr"] == 0.004
    _train(changed, 1)  # and the schedule goes on from there with the new settings
    assert changed.schedule.last_epoch == 7


@pytest.mark.parametrize("kind", ["sequential", "restarts"])
def test_a_schedule_of_another_kind_resumes_whole_where_it_stood(kind, tmp_path):
    # its position is not last_epoch alone (SequentialLR's children, T_cur): keeping the
    # freshly built state over it broke the resume (an error, or the rate of step 0)
    def engine() -> SingleEngine:
        task = make_task()
        train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=None)
        eng = SingleEngine(SingleEngineConfig(), train, DistInfo())

        def schedule(o):
            if kind == "restarts":
                return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=10)
            return torch.optim.lr_scheduler.SequentialLR(o, [
                torch.optim.lr_scheduler.LinearLR(o, 0.1, total_iters=3),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, 10)], milestones=[3])

        eng.setup(task, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), schedule)
        return eng

    first = engine()
    _train(first, 6)
    first.save_state(tmp_path)
    resumed = engine()
    resumed.load_state(tmp_path)
    assert resumed.lr == first.lr
    _train(first, 2)
    _train(resumed, 2)
    assert resumed.lr == pytest.approx(first.lr, rel=1e-12)
