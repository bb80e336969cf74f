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


def test_a_mapping_without_a_name_is_the_default_component_and_switching_drops_its_options():
    # the YAML left the name implicit: its options were the default encoder's, and kept
    from alp_train.config import default_component_names

    names = default_component_names()
    raw = {"model": {"audio_encoder": {"num_layers": 6, "d_model": 192}},
           "train": {"optimizer": {"weight_decay": 0.1}}}
    out = apply_overrides(raw, ["model.audio_encoder.name=conformer",
                                "train.optimizer.name=scaled-adam"], implied_names=names)
    assert out["model"]["audio_encoder"] == {"name": "conformer"}
    assert out["train"]["optimizer"] == {"name": "scaled-adam"}
    same = apply_overrides(raw, [f"model.audio_encoder.name={names[('model', 'audio_encoder')]}"],
                           implied_names=names)
    assert same["model"]["audio_encoder"]["num_layers"] == 6  # the same component: kept


def test_load_run_config_knows_the_default_names(tmp_path):
    from alp_cli.commands.run import load_run_config
    from alp_train.config import resolve_run

    path = tmp_path / "run.yaml"
    path.write_text("model:\n  audio_encoder: {num_layers: 6, d_model: 192}\n")
    resolved = resolve_run(load_run_config(str(path), ["model.audio_encoder.name=conformer"]))
    assert resolved.audio_encoder.config.num_layers == 4  # the conformer's own default
