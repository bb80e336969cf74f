"""extract_embeddings with a tiny duck-typed model and a list of collated batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alp_eval.extract import extract_embeddings
from alp_eval.probe import train_linear_probe


class FakeEncoder(nn.Module):
    """Masked mean of a linear map of the frames; records the mode it is called in."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = nn.Linear(3, 4)
        self.seen_modes: list[tuple[bool, bool]] = []

    def pooled_audio(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.seen_modes.append((self.training, torch.is_inference_mode_enabled()))
        mask = torch.arange(features.shape[1])[None, :] < lengths[:, None]
        frames = self.frame(features) * mask[..., None]
        return frames.sum(1) / lengths[:, None]


class FakeJointEncoder(FakeEncoder):
    """Adds a joint audio-text space behind a second linear map."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 2)

    def embed_audio(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.pooled_audio(features, lengths)), dim=-1)


def _batches() -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "ids": ["a", "b"],
            "features": torch.randn(2, 5, 3, generator=gen),
            "feature_lengths": torch.tensor([5, 3]),
            "captions": ["a dog", "rain"],
            "all_captions": [("a dog", "a dog barks"), ("rain",)],
            "labels": [{"kind": "animal"}, {"kind": "weather", "mood": "calm"}],
        },
        {
            "ids": [],
            "features": torch.zeros(0, 5, 3),
            "feature_lengths": torch.zeros(0),
            "captions": [],
            "labels": [],
        },
        {
            "ids": ["c"],
            "features": torch.randn(1, 4, 3, generator=gen),
            "feature_lengths": torch.tensor([2]),
            "captions": ["piano"],
            "labels": [{}],
        },
    ]


def test_extracts_every_clip_in_eval_mode_and_restores_train_mode():
    model = FakeJointEncoder()
    model.train()
    split = extract_embeddings(model, _batches())
    assert model.training
    assert all(mode == (False, True) for mode in model.seen_modes)
    assert split.ids == ["a", "b", "c"]
    assert split.captions == [("a dog", "a dog barks"), ("rain",), ("piano",)]
    assert split.labels == [{"kind": "animal"}, {"kind": "weather", "mood": "calm"}, {}]
    assert split.pooled.shape == (3, 4) and split.audio_embeds.shape == (3, 2)
    assert not split.pooled.is_inference() and not split.audio_embeds.is_inference()
    first = _batches()[0]
    with torch.no_grad():
        want = model.frame(first["features"][1, :3]).mean(0)
    torch.testing.assert_close(split.pooled[1], want)
    torch.testing.assert_close(split.audio_embeds.norm(dim=-1), torch.ones(3))


def test_model_in_eval_mode_stays_in_eval_mode_and_no_joint_space_gives_none():
    model = FakeEncoder()
    model.eval()
    split = extract_embeddings(model, _batches())
    assert not model.training
    assert split.audio_embeds is None
    assert len(split) == 3


def test_extracted_tensors_feed_a_probe():
    model = FakeJointEncoder()
    split = extract_embeddings(model, _batches() * 2)
    y = torch.tensor([0, 1, 0, 0, 1, 0])
    out = train_linear_probe(split.pooled, y, split.pooled, y, 2)
    assert 0.0 <= out["accuracy"] <= 1.0


class FakeOnePassEncoder(FakeJointEncoder):
    """Also offers both views from one pass, as AudioTextModel does."""

    def pooled_and_embedded_audio(self, features, lengths):
        pooled = self.pooled_audio(features, lengths)
        return pooled, F.normalize(self.proj(pooled), dim=-1)


def test_a_model_offering_both_views_at_once_is_run_once_per_batch():
    model, reference = FakeOnePassEncoder(), FakeJointEncoder()
    reference.load_state_dict(model.state_dict())
    split = extract_embeddings(model, _batches())
    want = extract_embeddings(reference, _batches())
    assert len(model.seen_modes) == 2  # two non-empty batches, one pass each
    assert len(reference.seen_modes) == 4  # pooled_audio, then embed_audio's own pass
    torch.testing.assert_close(split.pooled, want.pooled)
    torch.testing.assert_close(split.audio_embeds, want.audio_embeds)
