"""alp-data."""

from __future__ import annotations

from alp_data.version import __version__

__all__ = ["__version__"]
