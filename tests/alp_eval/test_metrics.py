"""Metrics against slow loop references, scikit-learn (multi-label) and hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from alp_eval.metrics import (
    accuracy,
    average_precision,
    lwlrap,
    macro_f1,
    majority_rate,
    mean_average_precision,
    retrieval_metrics,
)


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


def _multilabel_case(seed: int, n: int = 60, c: int = 9, levels: int = 6):
    """Scores on a coarse grid (many ties, within and across classes), sparse targets, one
    class without positives and one where every item is positive."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, levels, (n, c), generator=gen).double() / levels
    targets = torch.rand(n, c, generator=gen) < 0.25
    targets[:, 2] = False
    targets[:, 5] = True
    targets[0, 0] = True
    return scores, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_average_precision_matches_sklearn_with_ties(seed):
    sk = pytest.importorskip("sklearn.metrics")
    scores, targets = _multilabel_case(seed)
    got = average_precision(scores, targets)
    for c in range(scores.shape[1]):
        if not targets[:, c].any():
            assert torch.isnan(got[c])
            continue
        want = sk.average_precision_score(targets[:, c].numpy(), scores[:, c].numpy())
        assert float(got[c]) == pytest.approx(want, abs=1e-12), c
    # the same tie rule whatever the row order
    perm = torch.randperm(scores.shape[0], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(average_precision(scores[perm], targets[perm]), got,
                               equal_nan=True, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_average_precision_macro_micro_and_excluded_classes(seed):
    sk = pytest.importorskip("sklearn.metrics")
    scores, targets = _multilabel_case(seed)
    got = mean_average_precision(scores, targets)
    kept = targets.any(0)
    assert got["n_classes"] == int(kept.sum()) == scores.shape[1] - 1
    assert got["n_classes_without_positives"] == 1
    y, s = targets[:, kept].numpy(), scores[:, kept].numpy()
    assert got["mAP"] == pytest.approx(sk.average_precision_score(y, s, average="macro"),
                                       abs=1e-12)
    want_micro = sk.average_precision_score(targets.numpy(), scores.numpy(), average="micro")
    assert got["micro_mAP"] == pytest.approx(want_micro, abs=1e-12)


def test_average_precision_hand_computed():
    # ranking 0.9(+) 0.8(-) 0.8(+) 0.1(+): thresholds 0.9 -> P 1, R 1/3; 0.8 (tie of two) ->
    # P 2/3, R 2/3; 0.1 -> P 3/4, R 1: AP = 1/3 + 1/3 * 2/3 + 1/3 * 3/4
    scores = torch.tensor([0.9, 0.8, 0.8, 0.1])
    targets = torch.tensor([1, 0, 1, 1])
    assert float(average_precision(scores, targets)[0]) == pytest.approx(
        (1 + 2 / 3 + 3 / 4) / 3
    )
    # a perfect ranking scores 1, a reversed one the precision at each positive
    assert float(average_precision(torch.tensor([3.0, 2, 1]), torch.tensor([1, 1, 0]))[0]) == 1
    assert float(average_precision(torch.tensor([1.0, 2, 3]), torch.tensor([1, 0, 0]))[0]) == (
        pytest.approx(1 / 3)
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_lwlrap_matches_sklearn_weighted_lrap(seed):
    sk = pytest.importorskip("sklearn.metrics")
    scores, targets = _multilabel_case(seed)
    targets[3] = False  # an item without positives adds nothing
    want = sk.label_ranking_average_precision_score(
        targets.numpy(), scores.numpy(), sample_weight=targets.sum(1).numpy()
    )
    assert lwlrap(scores, targets) == pytest.approx(want, abs=1e-12)
    assert lwlrap(scores, targets, chunk_elements=1) == pytest.approx(want, abs=1e-12)


def test_multilabel_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="shape"):
        mean_average_precision(torch.rand(4, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="0/1"):
        average_precision(torch.rand(4, 2), torch.full((4, 2), 2))
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(torch.rand(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        average_precision(torch.tensor([0.1, float("nan")]), torch.tensor([1, 0]))
