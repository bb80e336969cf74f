"""Engine pieces: optimiser groups, the warm-up + cosine schedule, objective return types."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alp_cli.engine.schedule import build_optimizer, warmup_cosine
from alp_cli.engine.single import clip_ids, split_text_side
from alp_objectives import LossOutput
from alp_objectives.base import to_loss_output


class TwoTower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Linear(4, 4)
        self.audio_proj = nn.Linear(4, 2)
        self.extra_head = nn.Linear(2, 2)
        self.text_encoder = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4))
        self.text_proj = nn.Linear(4, 2)


def test_every_parameter_is_optimised_once_with_text_lr_and_no_decay_on_norms():
    model = TwoTower()
    opt, _ = build_optimizer(split_text_side(model), lr=1e-3, weight_decay=0.1, total_steps=10,
                             warmup_fraction=0.0, lrs={"text": 1e-5})
    seen = [p for g in opt.param_groups for p in g["params"]]
    assert len(seen) == len({id(p) for p in seen}) == len(list(model.parameters()))
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.text_encoder[0].weight)]["lr"] == 1e-5
    assert by_param[id(model.extra_head.weight)]["lr"] == 1e-3
    assert by_param[id(model.text_encoder[1].weight)]["weight_decay"] == 0.0
    assert by_param[id(model.audio_encoder.bias)]["weight_decay"] == 0.0
    assert by_param[id(model.audio_encoder.weight)]["weight_decay"] == 0.1


def test_warmup_then_cosine_to_zero():
    f = warmup_cosine(total_steps=110, warmup_steps=10)
    assert [f(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.5)
    assert f(110) == pytest.approx(0.0, abs=1e-12)
    assert f(35) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_objective_return_types_are_normalised():
    t = torch.tensor(2.0)
    assert to_loss_output(t).metrics == {"loss": 2.0}
    out = to_loss_output({"loss": t, "acc": torch.tensor(0.5)})
    assert out.loss is t and out.metrics == {"acc": 0.5, "loss": 2.0}
    assert to_loss_output(LossOutput(t, {"x": 1.0})).metrics == {"x": 1.0, "loss": 2.0}


def test_clip_ids_are_stable_and_shared_by_equal_strings():
    ids = clip_ids(["a", "b", "a"], torch.device("cpu"))
    assert ids.dtype == torch.int64 and ids[0] == ids[2] and ids[0] != ids[1]
    assert torch.equal(ids, clip_ids(["a", "b", "a"], torch.device("cpu")))
