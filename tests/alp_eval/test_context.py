"""Context types: size checks, primary-metric check, a torch-free package import."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from alp_eval.context import SplitEmbeddings, TaskResult


def test_split_sizes_must_agree():
    with pytest.raises(ValueError, match="labels"):
        SplitEmbeddings(["a", "b"], torch.zeros(2, 3), None, [(), ()], [{}])
    with pytest.raises(ValueError, match="audio_embeds"):
        SplitEmbeddings(["a"], torch.zeros(1, 3), torch.zeros(2, 4), [()], [{}])


def test_primary_must_be_a_metric():
    with pytest.raises(ValueError, match="primary"):
        TaskResult("probe/x", {"accuracy": 1.0}, "macro_f1")
    assert TaskResult("probe/x", {"accuracy": 0.5}, "accuracy").value == 0.5


def test_package_import_does_not_load_torch():
    code = (
        "import sys, alp_eval; from alp_eval import LinearProbeConfig, RetrievalConfig; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
