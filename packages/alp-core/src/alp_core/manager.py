"""The ALP plugin manager: loads the ``alp`` entry points and gathers records per kind.

Built-in packages and third-party plugins are found the same way, through the ``alp``
entry-point group. A plugin that fails to import (or whose hook raises) is reported by name
and skipped; two plugins registering one name for one kind is an error naming both
distributions; ``ALP_DISABLE_EXTERNAL_PLUGINS=1`` loads only ALP's own distributions.
"""

from __future__ import annotations

import functools
import importlib.metadata as md
import logging
import os
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pluggy

from alp_core import hookspecs
from alp_core.errors import PluginConflictError, UnknownComponentError
from alp_core.records import RECORD_TYPES

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "alp"
DISABLE_EXTERNAL_ENV = "ALP_DISABLE_EXTERNAL_PLUGINS"
BUILTIN_DISTRIBUTIONS = frozenset(
    {"alp-core", "alp-data", "alp-models", "alp-objectives", "alp-eval", "alp-train",
     "alp-cli"}
)
_KIND_TO_HOOK = {kind: hook for hook, kind in hookspecs.HOOK_KINDS.items()}


def _normalise(dist_name: str | None) -> str:
    return (dist_name or "").lower().replace("_", "-").replace(".", "-")


def _distribution(ep: md.EntryPoint) -> str:
    """The normalised name of an entry point's distribution ("" when its metadata has none)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return ""
    try:
        return _normalise(dist.metadata["Name"])
    except Exception:  # no METADATA file at all
        return ""


def external_plugins_disabled() -> bool:
    """True when the environment switch turns every non-ALP plugin off."""
    return os.environ.get(DISABLE_EXTERNAL_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    distribution: str
    version: str
    error: str


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin and the distribution that provides it."""

    plugin: str
    distribution: str
    version: str


class ALPPluginManager(pluggy.PluginManager):
    """A pluggy manager that knows ALP's hooks, records and failure rules."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.infos: dict[str, PluginInfo] = {}
        self._records: dict[str, dict[str, Any]] = {}

    # -- loading -----------------------------------------------------------------------
    def add_plugin(
        self, plugin: object, name: str, distribution: str = "", version: str = ""
    ) -> bool:
        """Register one plugin; one with a misspelled ``alp_*`` hook is reported and skipped."""
        try:
            self.register(plugin, name=name)
            self.check_pending()
        except Exception as exc:  # pluggy.PluginValidationError or a duplicate name
            if self.is_registered(plugin):
                self.unregister(plugin)
            self.failures.append(PluginFailure(name, distribution, version, _short(exc)))
            log.warning("ALP plugin %r (%s) skipped: %s", name, distribution or "?", exc)
            return False
        self.infos[name] = PluginInfo(name, distribution, version)
        self._records.clear()
        return True

    def load_entrypoints(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import every entry point of ``group``; failures are recorded, not raised."""
        only_builtin = external_plugins_disabled()
        seen: set[tuple[str, str]] = set()
        # ALP's own plugins first: an external entry point of the same name is the one
        # reported as taken, never a built-in knocked out by whatever comes first on sys.path
        for ep in sorted(md.entry_points(group=group),
                         key=lambda ep: _distribution(ep) not in BUILTIN_DISTRIBUTIONS):
            dist = getattr(ep, "dist", None)
            dist_name = _distribution(ep)
            version = dist.version if dist is not None else ""
            if (dist_name, ep.name) in seen:
                continue
            seen.add((dist_name, ep.name))
            if only_builtin and dist_name not in BUILTIN_DISTRIBUTIONS:
                log.info("external ALP plugin %r (%s) disabled by %s", ep.name, dist_name,
                         DISABLE_EXTERNAL_ENV)
                continue
            if self.has_plugin(ep.name):
                self.failures.append(PluginFailure(
                    ep.name, dist_name, version,
                    f"plugin name {ep.name!r} is already taken by "
                    f"{self.infos[ep.name].distribution or 'another plugin'}"))
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures.append(PluginFailure(ep.name, dist_name, version, _short(exc)))
                log.warning("ALP plugin %r (%s) failed to import: %s", ep.name, dist_name, exc)
                continue
            self.add_plugin(plugin, ep.name, dist_name, version)

    def report_failure(self, record: Any, error: str) -> None:
        """Record that a registered component of ``record``'s plugin cannot be used (shown by
        ``alp plugins``) and warn."""
        self.failures.append(PluginFailure(record.plugin, record.distribution, record.version,
                                           error))
        log.warning("ALP plugin %r (%s) skipped: %s", record.plugin,
                    record.distribution or "?", error)

    # -- records -----------------------------------------------------------------------
    def records(self, kind: str) -> dict[str, Any]:
        """All records of one kind, by name. Raises :class:`PluginConflictError` on a clash."""
        if kind not in _KIND_TO_HOOK:
            raise UnknownComponentError("component kind", kind, list(_KIND_TO_HOOK))
        if kind not in self._records:
            self._records[kind] = self._gather(kind)
        return self._records[kind]

    def _gather(self, kind: str) -> dict[str, Any]:
        hook = getattr(self.hook, _KIND_TO_HOOK[kind])
        record_type = RECORD_TYPES[kind]
        found: dict[str, Any] = {}
        for impl in reversed(hook.get_hookimpls()):  # registration order
            info = self.infos.get(impl.plugin_name, PluginInfo(impl.plugin_name, "", ""))
            try:
                items = list(impl.function() or [])
                bad = [i for i in items if not isinstance(i, record_type)]
                if bad:
                    raise TypeError(f"{impl.plugin_name}.{hook.name} returned {bad[0]!r}; "
                                    f"expected {record_type.__name__} records")
            except Exception as exc:
                self.failures.append(PluginFailure(info.plugin, info.distribution, info.version,
                                                   f"{hook.name}: {_short(exc)}"))
                log.warning("ALP plugin %r (%s): %s failed, its %s are skipped: %s",
                            info.plugin, info.distribution or "?", hook.name, kind, exc)
                continue
            for rec in items:
                rec = replace(rec, plugin=info.plugin, distribution=info.distribution,
                              version=info.version)
                if rec.name in found:
                    other = found[rec.name]
                    raise PluginConflictError(
                        f"conflicting plugins: {kind} {rec.name!r} is registered by both "
                        f"{_who(other)} and {_who(rec)}; uninstall one of them or set "
                        f"{DISABLE_EXTERNAL_ENV}=1")
                found[rec.name] = rec
        return found

    def get(self, kind: str, name: str) -> Any:
        """The record ``name`` of ``kind``; an unknown name lists the valid choices."""
        recs = self.records(kind)
        if name not in recs:
            raise UnknownComponentError(kind.replace("_", " "), name, list(recs))
        return recs[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.records(kind))

    def all_records(self) -> Iterable[Any]:
        """Every record of every kind, in ``alp plugins`` order."""
        for kind in hookspecs.HOOK_KINDS.values():
            yield from self.records(kind).values()


def _short(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _who(rec: Any) -> str:
    dist = rec.distribution or "an unnamed distribution"
    return f"{dist} (plugin {rec.plugin!r})"


def new_plugin_manager(load_entrypoints: bool = True, plugins: Iterable[tuple[str, object]] = ()
                       ) -> ALPPluginManager:
    """A fresh manager (what tests use); ``plugins`` are extra ``(name, module)`` pairs."""
    pm = ALPPluginManager()
    if load_entrypoints:
        pm.load_entrypoints()
    for name, plugin in plugins:
        pm.add_plugin(plugin, name)
    return pm


@functools.lru_cache(maxsize=1)
def get_plugin_manager() -> ALPPluginManager:
    """The process-wide manager, built on first use (never at import)."""
    return new_plugin_manager()


def reset_plugin_manager() -> None:
    """Forget the cached manager, e.g. after installing a plugin in the same process."""
    get_plugin_manager.cache_clear()
