"""Classification and retrieval metrics on tensors (no scikit-learn)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _check_pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    pred, target = torch.as_tensor(pred).reshape(-1), torch.as_tensor(target).reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.numel()} items but target has {target.numel()}")
    if pred.numel() == 0:
        raise ValueError("cannot score an empty set of predictions")
    return pred.long(), target.long()


def accuracy(pred: Tensor, target: Tensor) -> float:
    """Fraction of items whose predicted class id equals the target class id."""
    pred, target = _check_pair(pred, target)
    return float((pred == target).double().mean())


def macro_f1(pred: Tensor, target: Tensor) -> float:
    """Unweighted mean of per-class F1 over every class that occurs in ``target`` or ``pred``.

    Same convention as scikit-learn's default ``labels``: a class never seen in either scores
    nothing, a class only predicted (or only true) has F1 0 and still counts in the mean.
    """
    pred, target = _check_pair(pred, target)
    classes = torch.unique(torch.cat([pred, target]))
    hit = pred.unsqueeze(0) == classes.unsqueeze(1)
    true = target.unsqueeze(0) == classes.unsqueeze(1)
    tp = (hit & true).sum(1).double()
    fp = (hit & ~true).sum(1).double()
    fn = (~hit & true).sum(1).double()
    denom = 2 * tp + fp + fn
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return float(f1.mean())


def majority_rate(train_target: Tensor, test_target: Tensor) -> float:
    """Test accuracy of always predicting the most frequent train class (the chance baseline)."""
    train_target, test_target = torch.as_tensor(train_target), torch.as_tensor(test_target)
    majority = torch.bincount(train_target.long().reshape(-1)).argmax()
    return float((test_target.long() == majority).double().mean())


def retrieval_metrics(
    similarity: Tensor, relevant: Tensor, ks: Sequence[int] = (1, 5, 10), map_k: int = 10
) -> dict[str, float]:
    """Recall@k and mAP@k of ranking every gallery column for every query row.

    ``similarity`` is (Q, D), higher = better; ``relevant`` is a (Q, D) bool mask. R@k is the
    fraction of queries with at least one relevant item in the top k; AP@k is
    ``sum_{i<=k} P@i * rel_i / min(num_relevant, k)`` and mAP@k its mean over queries. Ties are
    broken by gallery index (stable sort: among equal scores the lower column ranks first), so
    results are deterministic. A k larger than the gallery acts as the gallery size; the key
    keeps the requested k (``R@10``). Every query needs at least one relevant item.
    """
    similarity = torch.as_tensor(similarity)
    relevant = torch.as_tensor(relevant, dtype=torch.bool)
    if similarity.dim() != 2 or similarity.shape != relevant.shape:
        raise ValueError(
            f"similarity {tuple(similarity.shape)} and relevant {tuple(relevant.shape)} must be "
            "the same (queries, gallery) shape"
        )
    n_query, n_gallery = similarity.shape
    if n_query == 0 or n_gallery == 0:
        raise ValueError(f"empty retrieval problem: {n_query} queries, {n_gallery} gallery items")
    n_relevant = relevant.sum(1)
    if bool((n_relevant == 0).any()):
        bad = torch.nonzero(n_relevant == 0).reshape(-1)[:10].tolist()
        raise ValueError(f"queries without any relevant gallery item (rows {bad}...)")
    depth = min(max(max(ks), map_k), n_gallery)
    order = torch.sort(similarity.float(), dim=1, descending=True, stable=True).indices[:, :depth]
    ranked = relevant.gather(1, order)
    out: dict[str, float] = {}
    for k in ks:
        out[f"R@{k}"] = float(ranked[:, : min(k, n_gallery)].any(1).double().mean())
    top = ranked[:, : min(map_k, n_gallery)].double()
    precision = top.cumsum(1) / torch.arange(1, top.shape[1] + 1, dtype=torch.float64)
    ap = (precision * top).sum(1) / n_relevant.clamp(max=map_k).double()
    out[f"mAP@{map_k}"] = float(ap.mean())
    return out
