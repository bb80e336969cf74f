"""alp-eval."""

from __future__ import annotations

from alp_eval.version import __version__

__all__ = ["__version__"]
