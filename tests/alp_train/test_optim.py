"""Optimizer parameter groups, AdamW weight decay, warm-up + cosine values, registered names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alp_core import get_plugin_manager, resolve_component
from alp_objectives.configs import InfoNCEConfig
from alp_objectives.contrastive import InfoNCELoss
from alp_train.config import resolve_run
from alp_train.optim.configs import AdamWConfig, ConstantConfig, WarmupCosineConfig
from alp_train.optim.groups import optimizer_groups
from alp_train.optim.schedules import (
    build_adamw,
    build_constant,
    build_warmup_cosine,
    warmup_cosine,
)
from alp_train.recipe import setup_model
from alp_train.task import TrainTask

TINY = {"model": {"audio_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2,
                                    "ffn_dim": 32},
                  "text_encoder": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                   "intermediate_size": 32},
                  "caption_decoder": {"d_model": 16, "num_layers": 1, "num_heads": 2,
                                      "ffn_dim": 32},
                  "embed_dim": 8},
        "objective": {"name": "coca"}, "eval": {"tasks": []}}


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A tiny AudioTextModel with all three parts (CoCa needs the towers and the decoder)."""
    built, _ = setup_model(resolve_run(TINY))
    return built


@pytest.fixture
def task(model: nn.Module) -> TrainTask:
    return TrainTask(model, InfoNCELoss(InfoNCEConfig(learnable_temperature=True)))


def test_model_param_groups_name_audio_text_decoder(model: nn.Module):
    groups = model.param_groups()
    assert set(groups) == {"audio", "text", "decoder"}
    prefixes = {"audio": ("audio_encoder.", "audio_proj."), "text": ("text_encoder.", "text_proj."),
                "decoder": ("caption_decoder.",)}
    for group, named in groups.items():
        assert named and all(n.startswith(prefixes[group]) for n, _ in named), group
    names = [n for named in groups.values() for n, _ in named]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert {n.split(".")[0] for n, _ in groups["audio"]} == {"audio_encoder", "audio_proj"}
    assert {n.split(".")[0] for n, _ in groups["text"]} == {"text_encoder", "text_proj"}


def test_every_trainable_parameter_is_in_exactly_one_group(task: TrainTask):
    groups = optimizer_groups({"task": task}, lr=1e-3, group_lrs={"text": 5e-4})
    ids = [id(p) for g in groups for p in g["params"]]
    trainable = [p for p in task.parameters() if p.requires_grad]
    assert len(ids) == len(set(ids)) == len(trainable)
    assert set(ids) == {id(p) for p in trainable}
    assert {g["name"] for g in groups} == {
        "audio.decay", "audio.no_decay", "text.decay", "text.no_decay", "decoder.decay",
        "decoder.no_decay", "objective.no_decay"}
    text = {id(p) for _, p in task.model.param_groups()["text"]}
    for g in groups:
        expected = 5e-4 if g["name"].startswith("text.") else 1e-3
        assert g["lr"] == expected, g["name"]
        in_text = {id(p) in text for p in g["params"]}
        assert in_text == {g["name"].startswith("text.")}, g["name"]
    objective = next(g for g in groups if g["name"] == "objective.no_decay")
    assert objective["params"] == [task.objective.log_logit_scale]


def test_frozen_parameters_are_left_out(task: TrainTask):
    frozen = next(task.model.audio_encoder.parameters())
    frozen.requires_grad_(False)
    try:
        groups = optimizer_groups({"task": task}, lr=1e-3)
        assert all(p is not frozen for g in groups for p in g["params"])
    finally:
        frozen.requires_grad_(True)


def test_adamw_decays_matrices_only(task: TrainTask):
    groups = optimizer_groups({"task": task}, lr=1e-3, group_lrs={"text": 5e-4})
    names = {id(p): n for n, p in task.named_parameters()}
    opt = build_adamw(AdamWConfig(weight_decay=0.05), groups, lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    decayed = seen = 0
    for g in opt.param_groups:
        for p in g["params"]:
            name = names[id(p)]
            no_decay = p.ndim < 2 or "norm" in name.lower()
            assert g["weight_decay"] == (0.0 if no_decay else 0.05), name
            decayed += not no_decay
            seen += 1
            if name.endswith(".bias") or p.ndim == 0:
                assert g["weight_decay"] == 0.0, name
    assert 0 < decayed < seen
    assert {g["lr"] for g in opt.param_groups if g["name"].startswith("text.")} == {5e-4}


def test_warmup_cosine_factor_values():
    f = warmup_cosine(total_steps=20, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)  # the peak, then cosine
    assert f(15) == pytest.approx(0.5)  # half way through the decay
    assert f(20) == pytest.approx(0.0) and f(25) == pytest.approx(0.0)
    assert f(12) == pytest.approx(0.5 * (1 + 0.8090169943749475))  # cos(pi/5)
    g = warmup_cosine(total_steps=4, warmup_steps=0)
    assert [g(s) for s in range(5)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466, 0.0])


def _lrs(schedule: torch.optim.lr_scheduler.LRScheduler, opt: torch.optim.Optimizer,
         steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
    return out


def test_constant_schedule_warms_up_then_stays():
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_constant(ConstantConfig(warmup_steps=4), opt)
    assert _lrs(sched, opt, 6) == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_warmup_cosine_by_hand():
    """Warm-up over 2 of 8 steps, then cosine over 6: values written out by hand."""
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_warmup_cosine(WarmupCosineConfig(warmup_fraction=0.25), opt, total_steps=8)
    # cos(pi * k / 6) for k = 0..6 -> factor (1 + cos) / 2
    expected = [0.5, 1.0, 1.0, 0.9330127, 0.75, 0.5, 0.25, 0.0669873, 0.0]
    assert _lrs(sched, opt, 9) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("name", ["adamw", "scaled-adam"])
def test_registered_optimizers_build_by_name(name: str, task: TrainTask):
    pm = get_plugin_manager()
    resolved = resolve_component(pm, "optimizer", {"name": name}, "train.optimizer")
    assert resolved.record.name == name
    opt = resolved.build(param_groups=optimizer_groups({"task": task}, 0.01), lr=0.01)
    assert isinstance(opt, torch.optim.Optimizer)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(task.parameters()))
    assert {g["lr"] for g in opt.param_groups} == {0.01}


@pytest.mark.parametrize(("name", "first"), [("warmup-cosine", 0.1), ("constant", 1.0),
                                             ("eden", None)])
def test_registered_schedules_build_by_name(name: str, first: float | None):
    pm = get_plugin_manager()
    spec = {"name": name}
    if name == "warmup-cosine":
        spec["warmup_fraction"] = 0.1
    resolved = resolve_component(pm, "lr_schedule", spec, "train.schedule")
    p = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = resolved.build(optimizer=opt, total_steps=100, steps_per_epoch=10)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    if first is not None:
        assert lrs[0] == pytest.approx(first)
    if name == "warmup-cosine":
        assert lrs == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    if name == "eden":  # a warm-up: rising from below the peak
        assert 0 < lrs[0] < lrs[-1] <= 1.0
    assert hasattr(sched, "state_dict")


def test_unknown_optimizer_name_is_a_config_error():
    from alp_core import ConfigError

    with pytest.raises(ConfigError, match="nadam"):
        resolve_component(get_plugin_manager(), "optimizer", {"name": "nadam"}, "train.optimizer")
