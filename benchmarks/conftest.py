"""Shared benchmark fixtures: one small demo corpus written once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    """200 clips of the embedded demo corpus (the default run's data, smaller)."""
    from alp_data.demo import DemoCorpusConfig, generate_demo_corpus
    from alp_data.manifest import read_manifest

    out = tmp_path_factory.mktemp("bench-corpus")
    paths = generate_demo_corpus(out, DemoCorpusConfig(num_clips=200, seed=0))
    return read_manifest(paths["train"])
