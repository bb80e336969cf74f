"""alp-train: the training recipe, engines, optimizers and schedules, checkpoints and resume."""

from __future__ import annotations

from alp_train.version import __version__

__all__ = ["__version__"]
