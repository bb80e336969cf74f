"""Fixtures of the alp-eval tests: a builder of tiny evaluation splits, and a frozen encoder
stand-in for `evaluate`."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from alp_eval.context import SplitEmbeddings


def _make_split(
    pooled: torch.Tensor,
    labels: list[dict[str, str]],
    captions: list[tuple[str, ...]] | None = None,
    audio_embeds: torch.Tensor | None = None,
) -> SplitEmbeddings:
    n = pooled.shape[0]
    return SplitEmbeddings(
        ids=[f"clip{i}" for i in range(n)],
        pooled=pooled,
        audio_embeds=audio_embeds,
        captions=captions if captions is not None else [() for _ in range(n)],
        labels=labels,
    )


@pytest.fixture
def make_split() -> Callable[..., SplitEmbeddings]:
    """``make_split(pooled, labels, captions=None, audio_embeds=None)`` -> SplitEmbeddings."""
    return _make_split


class PooledEncoder:
    """A contrastive-only stand-in for `evaluate`: its pooled output is the mean feature
    frame; no joint space, no caption decoder."""

    caption_decoder = None
    training = False

    def to(self, device):
        return self

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def pooled_audio(self, features, lengths):
        return features.mean(1)

    def generate_captions(self, features, lengths, **kw):
        raise AssertionError("must not be called without a decoder")


@pytest.fixture
def pooled_encoder() -> PooledEncoder:
    return PooledEncoder()
