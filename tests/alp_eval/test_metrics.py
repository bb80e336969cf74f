"""Metrics against slow loop references and hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from alp_eval.metrics import accuracy, macro_f1, majority_rate, retrieval_metrics


def _reference_retrieval(sim: torch.Tensor, rel: torch.Tensor, ks, map_k) -> dict[str, float]:
    """Per-query Python loops; ``sorted`` is stable, so ties go to the lower gallery index."""
    out: dict[str, list[float]] = {f"R@{k}": [] for k in ks}
    out[f"mAP@{map_k}"] = []
    for row_sim, row_rel in zip(sim.tolist(), rel.tolist(), strict=True):
        order = sorted(range(len(row_sim)), key=lambda j: -row_sim[j])
        ranked = [row_rel[j] for j in order]
        for k in ks:
            out[f"R@{k}"].append(1.0 if any(ranked[:k]) else 0.0)
        hits, total = 0, 0.0
        for i, is_rel in enumerate(ranked[:map_k], start=1):
            if is_rel:
                hits += 1
                total += hits / i
        out[f"mAP@{map_k}"].append(total / min(sum(row_rel), map_k))
    return {key: sum(vals) / len(vals) for key, vals in out.items()}


def test_retrieval_hand_computed_case():
    sim = torch.tensor([[0.9, 0.8, 0.7, 0.1], [0.2, 0.5, 0.5, 0.3], [0.0, 0.1, 0.2, 0.3]])
    rel = torch.tensor(
        [[False, True, False, True], [False, False, True, False], [False, False, False, True]]
    )
    # rankings: q0 -> 0,1,2,3 (hits at 2, 4); q1 -> 1,2,3,0 (tie 1/2 broken by index: hit at 2);
    # q2 -> 3,2,1,0 (hit at 1)
    got = retrieval_metrics(sim, rel, ks=(1, 5, 10), map_k=10)
    assert got["R@1"] == pytest.approx(1 / 3)
    assert got["R@5"] == pytest.approx(1.0)
    assert got["R@10"] == pytest.approx(1.0)
    # AP@10: q0 (1/2 + 2/4) / 2 = 0.5; q1 (1/2) / 1 = 0.5; q2 1.0
    assert got["mAP@10"] == pytest.approx(2 / 3)
    got2 = retrieval_metrics(sim, rel, ks=(1, 2), map_k=2)
    assert got2["R@2"] == pytest.approx(1.0)
    # AP@2: q0 (1/2) / min(2, 2) = 0.25; q1 0.5; q2 1.0
    assert got2["mAP@2"] == pytest.approx(1.75 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    n_query, n_gallery = 9, 17
    # one decimal creates many ties, so the tie rule is exercised too
    sim = torch.round(torch.rand(n_query, n_gallery, generator=gen) * 10) / 10
    rel = torch.rand(n_query, n_gallery, generator=gen) < 0.2
    rel[torch.arange(n_query), torch.randint(0, n_gallery, (n_query,), generator=gen)] = True
    rel[0] = True  # a query where everything is relevant
    for ks, map_k in [((1, 5, 10), 10), ((1, 3), 4), ((2, 50), 30)]:
        got = retrieval_metrics(sim, rel, ks=ks, map_k=map_k)
        want = _reference_retrieval(sim, rel, ks, map_k)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_retrieval_rejects_bad_input():
    with pytest.raises(ValueError, match="relevant"):
        retrieval_metrics(torch.rand(2, 3), torch.tensor([[True, False, False], [False] * 3]))
    with pytest.raises(ValueError, match="shape"):
        retrieval_metrics(torch.rand(2, 3), torch.ones(3, 2, dtype=torch.bool))


def _reference_macro_f1(pred: list[int], target: list[int]) -> float:
    scores = []
    for cls in sorted(set(pred) | set(target)):
        tp = sum(p == cls and t == cls for p, t in zip(pred, target, strict=True))
        fp = sum(p == cls and t != cls for p, t in zip(pred, target, strict=True))
        fn = sum(p != cls and t == cls for p, t in zip(pred, target, strict=True))
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_macro_f1_matches_loop_reference(seed):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 5, (40,), generator=gen)
    pred = torch.where(torch.rand(40, generator=gen) < 0.6, target, torch.randint(0, 6, (40,)))
    assert macro_f1(pred, target) == pytest.approx(
        _reference_macro_f1(pred.tolist(), target.tolist())
    )


def test_accuracy_macro_f1_and_majority_small_cases():
    pred, target = torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])
    assert accuracy(pred, target) == pytest.approx(0.75)
    # class 0: f1 1; class 1: tp 1 fp 1 -> 2/3; class 2: tp 1 fn 1 -> 2/3
    assert macro_f1(pred, target) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert macro_f1(target, target) == pytest.approx(1.0)
    assert majority_rate(torch.tensor([1, 1, 0]), torch.tensor([1, 0, 0, 2])) == 0.25
    with pytest.raises(ValueError, match="target"):
        accuracy(torch.tensor([0, 1]), torch.tensor([0]))
