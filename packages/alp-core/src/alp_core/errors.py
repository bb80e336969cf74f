"""Errors shared by every ALP package; each names the thing at fault and what is accepted."""

from __future__ import annotations


class ALPError(Exception):
    """Base class of every error ALP raises on purpose."""


class ConfigError(ALPError, ValueError):
    """A config key or value is wrong; the message names the key and what is accepted."""


class UnknownComponentError(ConfigError, KeyError):
    """A component name that no plugin registers; the message lists the valid choices."""

    def __init__(self, kind: str, name: str, choices: list[str], where: str = "") -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        listed = ", ".join(self.choices) or "(none registered)"
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}unknown {kind} {name!r}; valid choices: {listed}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class PluginConflictError(ALPError):
    """Two plugins register one name for the same kind of component."""


class DataError(ALPError, ValueError):
    """Input data (manifest, audio file) is malformed; the message names file and line."""
