"""save_state/load_state: nested training state round-trips exactly, as JSON + safetensors."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alp_train.checkpoint import rng_state, set_rng_state
from alp_train.state_io import load_state, save_state


def _adamw_after_steps(steps: int = 3) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    opt = torch.optim.AdamW([
        {"params": [model[0].weight, model[2].weight], "weight_decay": 0.1, "name": "decay"},
        {"params": [model[0].bias, *model[1].parameters(), model[2].bias],
         "weight_decay": 0.0, "name": "no_decay"}], lr=1e-2)
    for i in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 4) + i).pow(2).mean().backward()
        opt.step()
    return model, opt


def _step(model: nn.Module, opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    opt.zero_grad()
    gen = torch.Generator().manual_seed(42)
    model(torch.randn(5, 4, generator=gen)).pow(2).mean().backward()
    opt.step()
    return [p.detach().clone() for p in model.parameters()]


def test_optimizer_state_round_trip_gives_bit_identical_next_updates(tmp_path: Path):
    model, opt = _adamw_after_steps()
    save_state({"optimizer": opt.state_dict()}, tmp_path, "engine")
    restored = load_state(tmp_path, "engine")["optimizer"]

    twin = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    twin.load_state_dict(model.state_dict())
    twin_opt = torch.optim.AdamW([
        {"params": [twin[0].weight, twin[2].weight], "weight_decay": 0.1, "name": "decay"},
        {"params": [twin[0].bias, *twin[1].parameters(), twin[2].bias],
         "weight_decay": 0.0, "name": "no_decay"}], lr=0.5)  # lr comes from the state
    twin_opt.load_state_dict(restored)

    original = opt.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    assert sorted(restored["state"]) == sorted(original["state"]) == list(range(6))
    for index, entry in original["state"].items():
        for key, value in entry.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)
            assert restored["state"][index][key].dtype == value.dtype
    for a, b in zip(_step(model, opt), _step(twin, twin_opt)):
        assert torch.equal(a, b)


def test_rng_states_round_trip(tmp_path: Path):
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(7)
    random.random(), np.random.rand(), torch.rand(1)  # move every stream off its seed
    save_state({"ranks": [rng_state()]}, tmp_path, "rng")
    expected = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    set_rng_state(load_state(tmp_path, "rng")["ranks"][0])
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == expected


def test_structure_types_and_keys_are_kept(tmp_path: Path):
    state = {"tuple": (1, 2.5, "x"), "list": [1, [2, 3]], 0: "int key", "0": "str key",
             "nested": {3: (torch.arange(3), None, True)}, "float": 0.1,
             "array": np.arange(4, dtype=np.uint32), "empty": {}}
    save_state(state, tmp_path, "s")
    back = load_state(tmp_path, "s")
    assert back["tuple"] == (1, 2.5, "x") and isinstance(back["tuple"], tuple)
    assert back["list"] == [1, [2, 3]] and isinstance(back["list"][1], list)
    assert back[0] == "int key" and back["0"] == "str key"
    assert set(back) == set(state)
    inner = back["nested"][3]
    assert isinstance(inner, tuple) and torch.equal(inner[0], torch.arange(3))
    assert inner[1:] == (None, True)
    assert back["float"] == 0.1
    assert back["array"].dtype == np.uint32 and back["array"].tolist() == [0, 1, 2, 3]
    assert back["empty"] == {}


def test_nothing_is_pickled(tmp_path: Path):
    _, opt = _adamw_after_steps(1)
    save_state({"optimizer": opt.state_dict(), "rng": rng_state()}, tmp_path, "engine")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engine.json", "engine.safetensors"]
    json.loads((tmp_path / "engine.json").read_text())  # plain JSON
    assert (tmp_path / "engine.safetensors").read_bytes()[8:9] == b"{"  # safetensors header


def test_unknown_objects_are_refused(tmp_path: Path):
    import pytest

    with pytest.raises(TypeError, match="cannot store object"):
        save_state({"x": object()}, tmp_path, "bad")
