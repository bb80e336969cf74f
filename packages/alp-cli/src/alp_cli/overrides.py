"""Loading YAML run configs and applying ``key.path=value`` overrides from the command line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from alp_core.errors import ConfigError


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping top level is a :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` -> (["a", "b", "c"], value parsed as YAML, so 3 -> int, [1,2] -> list)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.path=value (e.g. train.epochs=3)")
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty part in key path {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(config: dict[str, Any], overrides: list[str],
                    implied_names: Mapping[tuple[str, ...], str] | None = None
                    ) -> dict[str, Any]:
    """Return a copy of ``config`` with each override set (creating nested mappings).

    ``...name=other`` on a component mapping that named another component replaces the
    mapping (the old component's options would not fit the new one). ``implied_names``
    gives the component a mapping without ``name`` stands for (the default's), so
    ``model.audio_encoder.name=conformer`` over ``audio_encoder: {num_layers: 6}`` drops
    the default encoder's ``num_layers`` too.
    """
    import copy

    implied = implied_names or {}
    result = copy.deepcopy(config)
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(f"override {text!r}: {where} is a {type(child).__name__}, "
                                  "not a mapping, so it has no sub-keys")
            node = child
        current = node.get("name", implied.get(tuple(parts[:-1])))
        if parts[-1] == "name" and isinstance(current, str) and current != value:
            # switching a component drops the options given for the old one (Hydra's config
            # groups do the same); options set by later overrides still apply
            node.clear()
        node[parts[-1]] = value
    return result
