"""Resolving a component spec ``{name: ..., option: value}`` against the registered records.

Used by ``alp run`` for every component of the run config and by components that hold other
components by name (e.g. a weighted sum of objectives). A config class may declare the
components nested in it with ``nested_components() -> [(kind, spec, key), ...]``; they are
resolved too, so a misspelled inner name fails while the config is validated, not mid-run,
and :meth:`Resolved.spec` writes them out with their defaults filled in. ``key`` is a dotted
path into the config's dump (``terms.0``, ``contrastive``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from alp_core.config import validate_model
from alp_core.errors import ConfigError, UnknownComponentError
from alp_core.manager import ALPPluginManager, get_plugin_manager
from alp_core.records import ComponentRecord

__all__ = ["Resolved", "resolve_component"]


@dataclass(frozen=True)
class Resolved:
    """One component: its plugin record and its validated config."""

    record: ComponentRecord
    config: BaseModel
    nested: tuple[tuple[str, Resolved], ...] = field(default=(), compare=False)

    def build(self, **context: Any) -> Any:
        """Build the component; context its factory does not name is left out."""
        return self.record.build(self.config, **context)

    def spec(self) -> dict[str, Any]:
        """``{name, **options}`` with every default filled in, nested components' too."""
        out = {"name": self.record.name, **self.config.model_dump(mode="json")}
        for key, inner in self.nested:
            target: Any = out
            for part in key.split("."):
                target = target[int(part)] if isinstance(target, list) else target[part]
            target.update(inner.spec())  # keeps the keys that are not the component's own
        return out


def resolve_component(
    pm: ALPPluginManager | None, kind: str, spec: Any, key: str
) -> Resolved:
    """Look up ``spec["name"]`` among ``kind`` and validate the rest of ``spec`` against it.

    Errors are :class:`ConfigError` naming ``key`` (e.g. ``objective.terms.1.name``) and what
    would be accepted.
    """
    pm = pm or get_plugin_manager()
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(
            f"{key}: expected a mapping with a 'name' key, e.g. {{name: ..., option: value}}; "
            f"valid names: {', '.join(pm.names(kind))}"
        )
    options = {k: v for k, v in spec.items() if k != "name"}
    try:
        record = pm.get(kind, spec["name"])
    except UnknownComponentError as err:
        raise UnknownComponentError(err.kind, err.name, err.choices, f"{key}.name") from None
    config = validate_model(record.config_cls, options, prefix=key)
    declared = getattr(config, "nested_components", None)
    nested = tuple(
        (inner_key, resolve_component(pm, inner_kind, inner_spec, f"{key}.{inner_key}"))
        for inner_kind, inner_spec, inner_key in (declared() if callable(declared) else ())
    )
    return Resolved(record, config, nested)
