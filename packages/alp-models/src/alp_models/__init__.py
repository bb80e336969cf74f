"""alp-models."""

from __future__ import annotations

from alp_models.version import __version__

__all__ = ["__version__"]
