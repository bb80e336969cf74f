"""Command-line overrides: switching a component by name drops the old component's options."""

from __future__ import annotations

import pytest

from alp_cli.overrides import apply_overrides, parse_override
from alp_core import ConfigError

RAW = {"model": {"audio_encoder": {"name": "transformer", "d_model": 64, "num_layers": 2},
                 "embed_dim": 32},
       "train": {"epochs": 3}}


def test_switching_the_component_drops_its_options():
    out = apply_overrides(RAW, ["model.audio_encoder.name=zipformer"])
    assert out["model"]["audio_encoder"] == {"name": "zipformer"}
    assert out["model"]["embed_dim"] == 32 and out["train"] == {"epochs": 3}
    assert RAW["model"]["audio_encoder"]["d_model"] == 64  # the input is not changed


def test_the_same_name_keeps_the_options():
    out = apply_overrides(RAW, ["model.audio_encoder.name=transformer"])
    assert out["model"]["audio_encoder"] == RAW["model"]["audio_encoder"]


def test_later_overrides_still_apply_after_a_switch():
    out = apply_overrides(RAW, ["model.audio_encoder.d_model=96",
                                "model.audio_encoder.name=zipformer",
                                "model.audio_encoder.num_layers=[2,2]"])
    assert out["model"]["audio_encoder"] == {"name": "zipformer", "num_layers": [2, 2]}


def test_options_set_before_the_name_in_the_same_mapping_are_dropped_too():
    out = apply_overrides({}, ["train.engine.name=ddp", "train.engine.bucket_cap_mb=10",
                               "train.engine.name=single"])
    assert out["train"]["engine"] == {"name": "single"}


def test_name_on_a_mapping_without_a_name_just_sets_it():
    out = apply_overrides({"objective": {"temperature": 0.1}}, ["objective.name=infonce"])
    assert out["objective"] == {"temperature": 0.1, "name": "infonce"}


def test_values_are_parsed_as_yaml_and_bad_paths_fail():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=[1, x]") == (["a"], [1, "x"])
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides(RAW, ["train.epochs.x=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(RAW, ["train.epochs"])
