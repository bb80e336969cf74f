"""alp-cli."""

from __future__ import annotations

from alp_cli.version import __version__

__all__ = ["__version__"]
