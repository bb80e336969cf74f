"""Eden schedule: factor values, warm-up, the lrs it writes, and state round trips."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from alp_train.optim.eden import Eden, eden_factor
from alp_train.optim.scaled_adam import ScaledAdam

# (step, epoch, expected factor) with the recipe's lr_batches=7500, lr_epochs=3.5 and warm-up
# 500 batches from 0.5, worked out by hand:
#   step 7500 -> ((7500^2 + 7500^2) / 7500^2)^-1/4 = 2^-1/4; epoch 3.5 likewise, so 2^-1/2;
#   step 22500 -> (1 + 9)^-1/4; epoch 10.5 -> 10^-1/4; epoch 1.75 -> (1 + 1/4)^-1/4;
#   step 250 -> warm-up 0.75 times (1 + 1/900)^-1/4.
HAND_VALUES = [
    (0, 0.0, 0.5),
    (500, 0.0, 1.0 / (1.0 + 1.0 / 225.0) ** 0.25),
    (7500, 0.0, 0.8408964152537145),
    (7500, 3.5, 0.7071067811865476),
    (22500, 0.0, 0.5623413251903491),
    (22500, 10.5, 0.31622776601683794),
    (7500, 1.75, 0.8408964152537145 * 0.9457416090031758),
    (250, 0.0, 0.75 * 0.9997224149628507),
]


@pytest.mark.parametrize(("step", "epoch", "expected"), HAND_VALUES)
def test_factor_matches_hand_values(step: int, epoch: float, expected: float) -> None:
    assert eden_factor(step, epoch) == pytest.approx(expected, rel=1e-12)


def test_factor_with_custom_settings() -> None:
    # warm-up 0.1 -> 1 over 100 batches: at 50 it is 0.55; batch term (1 + 1/4)^-1/4 with
    # lr_batches 100; epoch 2 with lr_epochs 2 gives 2^-1/4.
    got = eden_factor(50, 2.0, lr_batches=100, lr_epochs=2, warmup_batches=100, warmup_start=0.1)
    assert got == pytest.approx(0.55 * 0.9457416090031758 * 0.8408964152537145, rel=1e-12)
    assert eden_factor(0, 0.0, warmup_batches=0) == 1.0  # no warm-up


def _optimizer(lrs: tuple[float, ...] = (0.045, 0.01)) -> torch.optim.Optimizer:
    groups = [{"params": [nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=1.0)


def test_scheduler_writes_group_lrs() -> None:
    opt = _optimizer()
    sched = Eden(opt)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.0225, 0.005])
    sched.step_batch(7500)
    sched.step_epoch(3.5)
    decayed = [0.045 * 0.7071067811865476, 0.01 * 0.7071067811865476]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(decayed, rel=1e-12)
    assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    sched.step_batch(22500)
    sched.step_epoch()  # advances to 4.5
    expected = 0.5623413251903491 * ((4.5**2 + 3.5**2) / 3.5**2) ** -0.25
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * expected, rel=1e-12)


def test_warmup_ramp_is_linear_then_flat() -> None:
    opt = _optimizer((0.04,))
    sched = Eden(opt, lr_batches=1e12, lr_epochs=1e12)  # leave only the warm-up
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(600):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    for batch in (0, 1, 100, 250, 499):
        assert lrs[batch] == pytest.approx(0.04 * (0.5 + 0.5 * batch / 500), rel=1e-12)
    assert all(a < b for a, b in zip(lrs[:500], lrs[1:501]))
    assert lrs[500:] == pytest.approx([0.04] * 101, rel=1e-12)


def test_steps_per_epoch_derives_fractional_epoch() -> None:
    opt = _optimizer((0.045,))
    sched = Eden(opt, steps_per_epoch=100)
    for _ in range(350):
        opt.step()
        sched.step()
    assert sched.batch == 350 and sched.epoch == pytest.approx(3.5)
    warmup = 0.5 + 0.5 * 350 / 500
    by_hand = ((350**2 + 7500**2) / 7500**2) ** -0.25 * 2**-0.25 * warmup
    assert opt.param_groups[0]["lr"] == pytest.approx(0.045 * by_hand, rel=1e-12)

    plain = Eden(_optimizer((0.045,)))
    for _ in range(350):
        plain.step_batch()
    assert plain.epoch == 0.0  # without steps_per_epoch only step_epoch moves the epoch


def _setup() -> tuple[nn.Module, ScaledAdam, Eden]:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = ScaledAdam(model.parameters(), clipping_update_period=5)
    return model, opt, Eden(opt, lr_batches=20, lr_epochs=1, warmup_batches=8, steps_per_epoch=6)


def _run(model: nn.Module, opt: ScaledAdam, sched: Eden, steps: range) -> list[float]:
    lrs = []
    for step in steps:
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_state_dict_round_trip_with_scaled_adam() -> None:
    model, opt, sched = _setup()
    _run(model, opt, sched, range(13))
    lr_at_save = opt.param_groups[0]["lr"]
    buffer = io.BytesIO()
    torch.save(
        {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
        buffer,
    )
    lrs = _run(model, opt, sched, range(13, 30))

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    model2, opt2, sched2 = _setup()
    model2.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    assert sched2.batch == 13 and opt2.param_groups[0]["lr"] == lr_at_save
    lrs2 = _run(model2, opt2, sched2, range(13, 30))

    assert lrs2 == lrs and len(set(lrs)) > 1
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)


def test_loading_scheduler_state_reapplies_lr() -> None:
    opt = _optimizer((0.045,))
    sched = Eden(opt)
    sched.step_batch(9000)
    sched.step_epoch(2.0)
    state = sched.state_dict()
    fresh_opt = _optimizer((0.045,))
    Eden(fresh_opt).load_state_dict(state)
    assert fresh_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert opt.param_groups[0]["lr"] == pytest.approx(0.045 * eden_factor(9000, 2.0), rel=1e-12)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Eden(_optimizer(), warmup_start=1.5)
    with pytest.raises(ValueError):
        Eden(_optimizer(), lr_batches=0)
    with pytest.raises(ValueError):
        Eden(_optimizer(), steps_per_epoch=0)
    with pytest.raises(ValueError):
        Eden(_optimizer()).step(3)
