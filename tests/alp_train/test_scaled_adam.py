"""ScaledAdam against a slow plain-Python reference of the Zipformer update rule."""

from __future__ import annotations

import io
import math
import random

import pytest
import torch
from torch import nn

from alp_train.optim.scaled_adam import ScaledAdam


def _rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def reference_scaled_adam(
    init: list[list[list[float]]],
    grads: list[list[list[list[float]]]],
    lrs: list[float],
    hp: dict,
) -> tuple[list, dict]:
    """Run the rule element by element on Python floats.

    ``init[group][param]`` is a flat list of values; ``grads[step][group][param]`` likewise.
    Returns the parameters after every step and flags saying which branches were taken.
    """
    b1, b2 = hp["betas"]
    period, clip_period = hp["size_update_period"], hp["clipping_update_period"]
    params = [[list(p) for p in group] for group in init]
    state = [
        [
            {
                "v": [0.0] * len(p),
                "m": [0.0] * len(p),
                "rms": _rms(p),
                "sg": [0.0] * period,
                "sv": 0.0,
            }
            for p in group
        ]
        for group in params
    ]
    clip = [{"norms": [0.0] * clip_period, "thr": None} for _ in params]
    flags = {"clipped": [], "min_rms": False, "max_rms": False, "scalar_max": False}
    history = []
    for t, step_grads in enumerate(grads):
        for gi, group in enumerate(params):
            factor = 1.0
            if hp["clipping_scale"] is not None and t > 0:
                total = 0.0
                for pi, p in enumerate(group):
                    weight = hp["scalar_lr_scale"] if len(p) == 1 else state[gi][pi]["rms"]
                    total += sum((g * weight) ** 2 for g in step_grads[gi][pi])
                norm = math.sqrt(total)
                c = clip[gi]
                c["norms"][t % clip_period] = norm
                early = t in (10, 20, 40) and t < clip_period
                if early or t % clip_period == 0:
                    ordered = sorted(c["norms"])
                    if early:
                        ordered = ordered[len(ordered) - t :]
                    median = ordered[min(len(ordered) - 1, 2 * (len(ordered) // 4))]
                    c["thr"] = hp["clipping_scale"] * median * (2.0 if early else 1.0)
                if c["thr"] is not None:
                    factor = min(1.0, c["thr"] / (norm + 1e-20))
            if factor < 1.0:
                flags["clipped"].append((t, gi, factor))
            for pi, p in enumerate(group):
                s = state[gi][pi]
                g = [x * factor for x in step_grads[gi][pi]]
                scalar = len(p) == 1
                lr = lrs[gi] * (hp["scalar_lr_scale"] if scalar else 1.0)
                corr = 1.0 - b2 ** (t + 1)
                delta = []
                for k in range(len(p)):
                    s["v"][k] = b2 * s["v"][k] + (1.0 - b2) * g[k] * g[k]
                    v_hat = s["v"][k] / corr if corr < 0.99 else s["v"][k]
                    delta.append(-lr * g[k] / (math.sqrt(v_hat) + hp["eps"]))
                if not scalar:
                    s["sg"][t % period] = sum(p[k] * g[k] for k in range(len(p)))
                    if t % period == period - 1:
                        s["rms"] = _rms(p)
                    if s["rms"] < hp["param_min_rms"]:
                        flags["min_rms"] = True
                    mult = max(s["rms"], hp["param_min_rms"])
                    delta = [d * mult for d in delta]
                    if t % period == period - 1 and t > 0:
                        b2p = b2**period
                        s["sv"] = b2p * s["sv"] + (1.0 - b2p) * sum(x * x for x in s["sg"]) / period
                        corr2 = 1.0 - b2p ** ((t + 1) // period)
                        size = -lrs[gi] * hp["scalar_lr_scale"] * math.sqrt(corr2) * sum(s["sg"])
                        size /= math.sqrt(s["sv"]) + hp["eps"]
                        if s["rms"] < hp["param_min_rms"]:
                            size = 0.0
                        size = min(0.1, max(-0.1, size))
                        limit = (hp["param_max_rms"] - s["rms"]) / s["rms"]
                        if limit < size:
                            flags["max_rms"] = True
                            size = limit
                        delta = [delta[k] + p[k] * size for k in range(len(p))]
                for k in range(len(p)):
                    s["m"][k] = b1 * s["m"][k] + (1.0 - b1) * delta[k]
                    p[k] += s["m"][k]
                if scalar and abs(p[0]) > hp["scalar_max"]:
                    flags["scalar_max"] = True
                    p[0] = max(-hp["scalar_max"], min(hp["scalar_max"], p[0]))
        history.append([[list(p) for p in group] for group in params])
    return history, flags


DEFAULTS = dict(
    clipping_scale=2.0,
    betas=(0.9, 0.98),
    scalar_lr_scale=0.1,
    eps=1e-8,
    param_min_rms=1e-5,
    param_max_rms=3.0,
    scalar_max=10.0,
    size_update_period=4,
    clipping_update_period=4,
)


def _scenario(name: str):
    """Initial values (shapes), grads per step, lrs and options for one reference run."""
    rng = random.Random(0)
    if name == "default":
        shapes = [[(3, 4), ()], [(5,)]]
        init = [[[rng.gauss(0, 1) for _ in range(math.prod(s))] for s in g] for g in shapes]
        steps, huge_step, lrs, hp = 12, 6, [0.045, 0.02], dict(DEFAULTS)
        grad_of = [[lambda k, p: rng.gauss(0, 1) + 0.3 * p] * 2, [lambda k, p: rng.gauss(0, 1)]]
    else:  # "bounds": hit param_min_rms, param_max_rms, scalar_max and early clip estimates
        shapes = [[(4, 4), (1,)], [(2, 3)]]
        init = [
            [[rng.gauss(0, 1.0) for _ in range(16)], [0.049]],
            [[rng.gauss(0, 0.001) for _ in range(6)]],
        ]
        steps, huge_step, lrs = 45, 30, [0.2, 0.1]
        hp = dict(DEFAULTS, param_min_rms=0.01, param_max_rms=1.02 * _rms(init[0][0]))
        hp.update(scalar_max=0.05, size_update_period=2, clipping_update_period=100)
        # Gradients pointing against the weights make the learned scale want to grow.
        grad_of = [
            [lambda k, p: -p + 0.1 * rng.gauss(0, 1), lambda k, p: -1.0],
            [lambda k, p: rng.gauss(0, 1)],
        ]
    grads = []
    for t in range(steps):
        mult = 1e4 if t == huge_step else 1.0
        grads.append(
            [
                [[mult * grad_of[gi][pi](k, v) for k, v in enumerate(p)] for pi, p in enumerate(g)]
                for gi, g in enumerate(init)
            ]
        )
    return shapes, init, grads, lrs, hp, huge_step


@pytest.mark.parametrize("name", ["default", "bounds"])
def test_matches_plain_python_reference(name: str) -> None:
    shapes, init, grads, lrs, hp, huge_step = _scenario(name)
    history, flags = reference_scaled_adam(init, grads, lrs, hp)

    # The scenario really exercises clipping (on the huge step) and the bounds.
    assert any(t == huge_step and f < 0.01 for t, _, f in flags["clipped"])
    if name == "bounds":
        assert flags["min_rms"] and flags["max_rms"] and flags["scalar_max"]

    tensors = [
        [torch.tensor(v, dtype=torch.float64).reshape(s).requires_grad_() for v, s in zip(g, gs)]
        for g, gs in zip(init, shapes)
    ]
    opt = ScaledAdam(
        [{"params": group, "lr": lr} for group, lr in zip(tensors, lrs)], lr=999.0, **hp
    )
    for t, step_grads in enumerate(grads):
        for group, group_grads in zip(tensors, step_grads):
            for p, g in zip(group, group_grads):
                p.grad = torch.tensor(g, dtype=torch.float64).reshape(p.shape)
        opt.step()
        for group, expected_group in zip(tensors, history[t]):
            for p, expected in zip(group, expected_group):
                got = p.detach().flatten().tolist()
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, t)


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 2))
    model.register_parameter("gain", nn.Parameter(torch.tensor(0.7)))
    return model


def _loss(model: nn.Module, step: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(16, 6, generator=gen) * (50.0 if step == 9 else 1.0)
    return (model(x) * model.gain).pow(2).mean()


def _make_opt(model: nn.Module) -> ScaledAdam:
    return ScaledAdam(
        [
            {"params": [model[0].weight, model[0].bias, model.gain]},
            {"params": model[2].parameters(), "lr": 0.01},
        ],
        clipping_update_period=4,
    )


def _train(model: nn.Module, opt: ScaledAdam, steps: range) -> None:
    for step in steps:
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()


def test_state_dict_round_trip_gives_identical_updates() -> None:
    model = _model()
    opt = _make_opt(model)
    _train(model, opt, range(7))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)

    _train(model, opt, range(7, 20))  # crosses clipping estimates, a big step, scale updates

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # the state is plain tensors and numbers
    resumed = _model()
    resumed.load_state_dict(saved["model"])
    resumed_opt = _make_opt(resumed)
    resumed_opt.load_state_dict(saved["opt"])
    _train(resumed, resumed_opt, range(7, 20))

    for (name, a), b in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name
    fresh = _model()
    _train(fresh, _make_opt(fresh), range(7, 20))  # without the state the result differs
    assert not torch.equal(fresh[0].weight, model[0].weight)


def test_skips_parameters_without_gradient() -> None:
    used, unused = nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(3))
    before = unused.detach().clone()
    opt = ScaledAdam([used, unused])
    for _ in range(3):
        opt.zero_grad()
        used.sum().backward()
        opt.step()
    assert torch.equal(unused, before) and len(opt.state[unused]) == 0
    assert opt.state[used]["step"] == 3


def test_trains_a_small_regression() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = x @ torch.randn(10, 1) + 0.5
    model = nn.Linear(10, 1)
    opt = ScaledAdam(model.parameters(), lr=0.045)

    def loss() -> torch.Tensor:
        return (model(x) - y).pow(2).mean()

    initial = loss().item()
    for _ in range(400):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 1e-3 * initial


def test_rejects_bad_arguments() -> None:
    p = [nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError):
        ScaledAdam(p, clipping_scale=0.0)
    with pytest.raises(ValueError):
        ScaledAdam(p, param_min_rms=1.0, param_max_rms=0.5)
    assert ScaledAdam(p).defaults["lr"] == 0.045


def test_the_recipe_groups_of_one_rate_are_one_group_as_in_icefall() -> None:
    # ScaledAdam has no weight decay: the decay / no-decay split only cut its clipping (one
    # factor per group, from the group's norm) into two, which differs from icefall
    from alp_train.optim.configs import ScaledAdamConfig
    from alp_train.optim.groups import optimizer_groups
    from alp_train.optim.schedules import build_scaled_adam

    split = _model()
    groups = optimizer_groups({"m": split}, 0.05)
    assert [g["name"] for g in groups] == ["m.decay", "m.no_decay"]
    opt = build_scaled_adam(ScaledAdamConfig(), groups, 0.05)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["name"] == "m.decay+m.no_decay"
    whole = _model()
    ref = ScaledAdam([{"params": [p for g in optimizer_groups({"m": whole}, 0.05)
                                  for p in g["params"]], "lr": 0.05}],
                     betas=(0.9, 0.98), clipping_scale=2.0)
    _train(split, opt, range(30))  # a gradient spike at step 9 clips
    _train(whole, ref, range(30))
    for (name, a), b in zip(split.named_parameters(), whole.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12, msg=name)
    text = optimizer_groups({"m": _model()}, 0.05, {"m": 0.01})
    assert [g["lr"] for g in build_scaled_adam(ScaledAdamConfig(), text, 0.05).param_groups] \
        == [0.01]
