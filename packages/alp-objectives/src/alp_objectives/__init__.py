"""alp-objectives."""

from __future__ import annotations

from alp_objectives.version import __version__

__all__ = ["__version__"]
