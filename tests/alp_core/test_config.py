"""Component config validation: errors name the key and what is accepted."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import Field, ValidationError

from alp_core import ComponentConfig, ConfigError, validate_model


class Inner(ComponentConfig):
    depth: int = Field(2, ge=1)


class Outer(ComponentConfig):
    mode: Literal["fast", "slow"] = "fast"
    inner: Inner = Inner()


def test_unknown_key_names_key_and_accepted_keys():
    with pytest.raises(ConfigError) as err:
        validate_model(Outer, {"inner": {"dpth": 3}}, prefix="model")
    msg = str(err.value)
    assert "model.inner.dpth: unknown key" in msg and "accepted keys: depth" in msg


def test_wrong_value_names_key_and_accepted_values():
    with pytest.raises(ConfigError) as err:
        validate_model(Outer, {"mode": "medium"})
    assert "mode" in str(err.value) and "'fast'" in str(err.value) and "'slow'" in str(err.value)
    with pytest.raises(ConfigError, match=r"inner\.depth.*greater than or equal to 1"):
        validate_model(Outer, {"inner": {"depth": 0}})


def test_configs_are_frozen_and_defaults_fill_in():
    cfg = validate_model(Outer, None)
    assert cfg.inner.depth == 2
    with pytest.raises(ValidationError):
        cfg.mode = "slow"


def test_errors_inside_optional_and_union_configs_name_the_key_as_written():
    # pydantic tags union members in the path (data.spec_augment.SpecAugmentConfig.bogus, and a
    # "bool" complaint about the mapping beside it); an Optional model listed no accepted keys
    from alp_train.config import RunConfig
    from alp_train.engines.configs import SingleEngineConfig

    with pytest.raises(ConfigError) as err:
        validate_model(RunConfig, {"data": {"spec_augment": {"bogus": 1}}})
    assert str(err.value) == ("data.spec_augment.bogus: unknown key (accepted keys: "
                              "features_mask_size, frames_mask_size, max_frames_mask_fraction,"
                              " num_feature_masks, num_frame_masks, p)")
    with pytest.raises(ConfigError) as err:
        validate_model(RunConfig, {"model": {"init_from": {"path": "x", "bogus": 1}}})
    assert str(err.value) == ("model.init_from.bogus: unknown key (accepted keys: part, path,"
                              " strict)")
    with pytest.raises(ConfigError) as err:  # not a mapping: every accepted form is named
        validate_model(RunConfig, {"data": {"spec_augment": 3}})
    assert "valid boolean" in str(err.value) and "SpecAugmentConfig" in str(err.value)
    with pytest.raises(ConfigError, match=r"train.engine.bogus: unknown key \(this component "
                                          r"takes no options\)"):
        validate_model(SingleEngineConfig, {"bogus": 1}, prefix="train.engine")
