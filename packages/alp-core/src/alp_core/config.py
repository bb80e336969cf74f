"""Config base classes: every component config forbids unknown keys."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from alp_core.errors import ConfigError


class ComponentConfig(BaseModel):
    """Base of every component's config: strict keys, frozen after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyConfig(ComponentConfig):
    """Config of a component that takes no options."""


def _models_of(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation admits: ``X``, ``X | None``, ``bool | X``..."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_of(arg)]


def _walk(cls: type[BaseModel] | None, loc: tuple[Any, ...]
          ) -> tuple[list[str], type[BaseModel] | None, tuple[str, ...] | None, bool]:
    """``loc`` without pydantic's union-member tags (``SpecAugmentConfig``, ``bool``), the
    model holding its last key (None when not a model), the key path of the union whose tag
    it passed (None: none) and whether that tag named a config model."""
    clean: list[str] = []
    current: type[BaseModel] | None = cls
    tags: dict[str, type[BaseModel] | None] = {}
    union: tuple[str, ...] | None = None
    via_model = False
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in tags:  # a union member's tag: step into it
            current, union, via_model = tags[part], tuple(clean), tags[part] is not None
            tags = {}
            continue
        clean.append(str(part))
        if i == len(loc) - 1:
            break
        field = current.model_fields.get(part) if current is not None else None
        annotation = getattr(field, "annotation", None)
        members = typing.get_args(annotation) if typing.get_origin(annotation) in (
            typing.Union, types.UnionType) else ()
        tags = {getattr(m, "__name__", str(m)): (m if isinstance(m, type) and issubclass(
            m, BaseModel) else None) for m in members}
        models = _models_of(annotation)
        current = models[0] if len(models) == 1 else None
    return clean, current, union, via_model


def format_validation_error(
    err: ValidationError, prefix: str = "", cls: type[BaseModel] | None = None
) -> str:
    """Render a pydantic error as ``key.path: problem`` lines, with the accepted keys.

    Where a value may be a config model or something else (``bool | SpecAugmentConfig``) and
    a mapping was given, only the model's errors are shown, under the key path as written.
    """
    items = [(item, *_walk(cls, tuple(item["loc"]))) for item in err.errors()]
    # unions given a mapping: a model member's error lies inside it, deeper than the union
    mapped = {union for _, clean, _, union, via in items
              if via and union is not None and len(clean) > len(union)}
    lines = []
    for item, clean, holder, union, via in items:
        if union is not None and not via and union in mapped:
            continue  # the other members' complaints about a mapping meant for the model
        loc = ".".join(clean)
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "<root>")
        kind = item["type"]
        if kind == "extra_forbidden":
            accepted = sorted(holder.model_fields) if holder is not None else []
            hint = (f" (accepted keys: {', '.join(accepted)})" if accepted
                    else " (this component takes no options)" if holder is not None else "")
            lines.append(f"{key}: unknown key{hint}")
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        else:
            got = item.get("input")
            lines.append(f"{key}: {item['msg']} (got {got!r})")
    return "\n".join(lines)


def validate_model(cls: type[BaseModel], values: Any, prefix: str = "") -> BaseModel:
    """Validate ``values`` into ``cls``; a failure becomes a :class:`ConfigError` naming keys.

    Unknown keys are answered with the keys the config accepts.
    """
    try:
        return cls.model_validate(values if values is not None else {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, prefix, cls)) from None
