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
