"""Shared fixtures: deterministic seeds, a fresh plugin manager per test, no external plugins."""

from __future__ import annotations

import os
import random

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:  # alp-core/alp-objectives alone need no numpy
        pass
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:
        pass
    yield


@pytest.fixture(autouse=True)
def _fresh_plugin_manager():
    """Every test sees a newly built plugin manager (never one cached by an earlier test)."""
    from alp_core import reset_plugin_manager

    reset_plugin_manager()
    yield
    reset_plugin_manager()
