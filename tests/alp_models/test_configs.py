"""Configs: strict keys, validation, and a torch-free import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from alp_models.configs import (
    BertTextEncoderConfig,
    MiniLMTextEncoderConfig,
    ProjectionConfig,
    TransformerAudioEncoderConfig,
)

ALL_CONFIGS = [
    TransformerAudioEncoderConfig, BertTextEncoderConfig, MiniLMTextEncoderConfig, ProjectionConfig
]


@pytest.mark.parametrize("cls", ALL_CONFIGS)
def test_unknown_key_rejected(cls):
    with pytest.raises(ValidationError, match="extra"):
        cls(not_a_key=1)


def test_defaults_and_values():
    assert TransformerAudioEncoderConfig().subsampling == 4
    assert BertTextEncoderConfig().pooling == "cls"
    assert MiniLMTextEncoderConfig().pooling == "mean"
    assert ProjectionConfig(embed_dim=64).resolved_hidden_dim == 64
    assert ProjectionConfig(embed_dim=64, hidden_dim=32).resolved_hidden_dim == 32


@pytest.mark.parametrize(
    "cls,values",
    [
        (TransformerAudioEncoderConfig, {"subsampling": 3}),
        (TransformerAudioEncoderConfig, {"d_model": 30, "num_heads": 4}),
        (BertTextEncoderConfig, {"pooling": "max"}),
        (BertTextEncoderConfig, {"hidden_size": 30, "num_heads": 4}),
        (ProjectionConfig, {"embed_dim": 0}),
    ],
)
def test_bad_values_rejected(cls, values):
    with pytest.raises(ValidationError):
        cls(**values)


def test_configs_are_frozen():
    cfg = ProjectionConfig()
    with pytest.raises(ValidationError):
        cfg.embed_dim = 3


def test_configs_import_without_torch():
    code = (
        "import sys, alp_models, alp_models.configs; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
