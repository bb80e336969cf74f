"""The run's evaluation scores a split's clips, not the order a loader gives them in: a
manifest and a stream of shuffled shards hold the same clips in different orders, and the
probe's seeded validation rows (and capped subsets) were drawn by position."""

from __future__ import annotations

import torch

from alp_eval.configs import LinearProbeConfig
from alp_eval.probe import LinearProbeTask
from alp_eval.suite import evaluate


def _clips(n: int, seed: int) -> list[dict]:
    """Clips whose mean feature carries their class, noisily (so the chosen decay matters)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        label = i % 3
        features = torch.randn(5, 8, generator=g) * 2.0
        features[:, label] += 1.0
        out.append({"id": f"clip-{seed}-{i:03d}", "features": features,
                    "labels": {"kind": f"k{label}", "size": "big" if i % 2 else "small"}})
    return out


def _batches(clips: list[dict], size: int) -> list[dict]:
    return [{"ids": [c["id"] for c in clips[i:i + size]],
             "features": torch.stack([c["features"] for c in clips[i:i + size]]),
             "feature_lengths": torch.full((len(clips[i:i + size]),), 5),
             "labels": [c["labels"] for c in clips[i:i + size]]}
            for i in range(0, len(clips), size)]


def _run(encoder, train: list[dict], test: list[dict], size: int):
    task = LinearProbeTask(LinearProbeConfig(max_train=30, steps=50))
    return evaluate(encoder, [task], {"train": _batches(train, size),
                                         "test": _batches(test, size)},
                    device=torch.device("cpu"), seed=3, batch_size=8)


def test_the_same_clips_in_another_order_give_the_same_results(pooled_encoder):
    train, test = _clips(48, 0), _clips(24, 1)
    first = _run(pooled_encoder, train, test, 8)
    g = torch.Generator().manual_seed(9)
    shuffled = [train[i] for i in torch.randperm(len(train), generator=g).tolist()]
    again = _run(pooled_encoder, shuffled, list(reversed(test)), 5)  # other batches too
    assert [r.task for r in first] == [r.task for r in again] == ["probe/kind", "probe/size"]
    for a, b in zip(first, again):
        assert a.metrics == b.metrics, a.task
    # and the results depend on the clips: other clips give other figures
    other = _run(pooled_encoder, _clips(48, 2), test, 8)
    assert any(a.metrics != b.metrics for a, b in zip(first, other))
