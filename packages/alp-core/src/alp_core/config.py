"""Config base classes: every component config forbids unknown keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from alp_core.errors import ConfigError


class ComponentConfig(BaseModel):
    """Base of every component's config: strict keys, frozen after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class EmptyConfig(ComponentConfig):
    """Config of a component that takes no options."""


def _accepted_keys(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys accepted beside the unknown key at ``loc`` (walks nested config models)."""
    current: Any = cls
    for part in loc[:-1]:
        is_model = isinstance(current, type) and issubclass(current, BaseModel)
        field = current.model_fields.get(part) if is_model else None
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        current = ann
    return sorted(current.model_fields)


def format_validation_error(
    err: ValidationError, prefix: str = "", cls: type[BaseModel] | None = None
) -> str:
    """Render a pydantic error as ``key.path: problem`` lines, with the accepted keys."""
    lines = []
    for item in err.errors():
        loc = ".".join(str(p) for p in item["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "<root>")
        kind = item["type"]
        if kind == "extra_forbidden":
            accepted = _accepted_keys(cls, item["loc"]) if cls is not None else []
            hint = f" (accepted keys: {', '.join(accepted)})" if accepted else ""
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
