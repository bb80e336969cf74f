"""Registers the built-in components of alp-models through the ALP hooks (cheap: no torch import)."""

from __future__ import annotations

from alp_core import hookimpl
