"""Classification, multi-label and retrieval metrics on tensors (no scikit-learn).

Multi-label scores follow the AudioSet / FSD50K convention: ``mAP`` is the unweighted mean over
classes of each class's average precision (scikit-learn's ``average_precision_score``, ties in
the scores grouped into one threshold), classes without a positive in the scored set are left
out and counted. ``lwlrap`` (label-weighted label-ranking AP, the FSDKaggle2019 metric) is
scikit-learn's label-ranking AP weighted by each row's number of positives.
"""

from __future__ import annotations

import math
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


# Classes scored together in ``average_precision``: bounds the (N, chunk) work tensors.
_AP_CLASS_CHUNK = 64


def _check_multilabel(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """(N, C) float64 scores and (N, C) bool targets, checked."""
    scores, targets = torch.as_tensor(scores), torch.as_tensor(targets)
    if scores.dim() == 1:
        scores, targets = scores.reshape(-1, 1), targets.reshape(-1, 1)
    if scores.dim() != 2 or scores.shape != targets.shape:
        raise ValueError(
            f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be the same "
            "(items, classes) shape"
        )
    if scores.shape[0] == 0:
        raise ValueError("cannot score an empty set of predictions")
    scores = scores.detach().double().cpu()
    if not bool(torch.isfinite(scores).all()):
        raise ValueError("scores hold NaN or infinite values")
    targets = targets.detach().cpu()
    if targets.dtype != torch.bool:
        if bool(((targets != 0) & (targets != 1)).any()):
            raise ValueError("targets must be 0/1 (multi-hot)")
        targets = targets != 0
    return scores, targets


def average_precision(scores: Tensor, targets: Tensor) -> Tensor:
    """Average precision of each class (column): (N, C) scores + (N, C) 0/1 targets → (C,).

    ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds, highest first, as in
    scikit-learn's ``average_precision_score``: items with equal scores enter together, so the
    order among ties does not matter. A class without a positive gets NaN. A 1-D input is one
    class. Float64 on the CPU.
    """
    scores, targets = _check_multilabel(scores, targets)
    n = scores.shape[0]
    rank = torch.arange(1, n + 1, dtype=torch.float64).unsqueeze(1)
    out = []
    for start in range(0, scores.shape[1], _AP_CLASS_CHUNK):
        chunk = scores[:, start : start + _AP_CLASS_CHUNK]
        ordered, order = torch.sort(chunk, dim=0, descending=True, stable=True)
        hits = targets[:, start : start + _AP_CLASS_CHUNK].gather(0, order).double()
        precision = hits.cumsum(0) / rank
        # every item takes the precision at the last item of its tie group (its threshold)
        group_end = torch.ones_like(ordered, dtype=torch.bool)
        group_end[:-1] = ordered[:-1] != ordered[1:]
        position = torch.arange(n).unsqueeze(1).expand_as(ordered)
        end_index = torch.where(group_end, position, torch.full_like(position, n - 1))
        end_index = end_index.flip(0).cummin(0).values.flip(0)
        n_pos = hits.sum(0)
        ap = (hits * precision.gather(0, end_index)).sum(0) / n_pos.clamp(min=1)
        out.append(torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan)))
    return torch.cat(out)


def mean_average_precision(scores: Tensor, targets: Tensor) -> dict[str, float]:
    """Macro mAP (the AudioSet / FSD50K figure) and micro mAP of multi-label scores.

    ``mAP``: the mean of :func:`average_precision` over the classes with at least one positive
    in ``targets``; the others are excluded and counted in ``n_classes_without_positives``
    (``n_classes`` are the ones averaged). ``micro_mAP``: the AP of all (item, class) pairs
    pooled into one ranking (scikit-learn's ``average="micro"``). Raises when no class has a
    positive.
    """
    scores, targets = _check_multilabel(scores, targets)
    per_class = average_precision(scores, targets)
    scored = ~torch.isnan(per_class)
    if not bool(scored.any()):
        raise ValueError("mean_average_precision: no class has a positive item")
    micro = average_precision(scores.reshape(-1), targets.reshape(-1))
    return {
        "mAP": float(per_class[scored].mean()),
        "micro_mAP": float(micro[0]),
        "n_classes": float(scored.sum()),
        "n_classes_without_positives": float((~scored).sum()),
    }


def lwlrap(scores: Tensor, targets: Tensor, chunk_elements: int = 1 << 24) -> float:
    """Label-weighted label-ranking average precision (FSDKaggle2019's lwlrap).

    For every positive (item, class) pair: the fraction of the classes scored at least as high
    as it on that item that are positive; lwlrap is the mean over all positive pairs (so each
    positive label weighs the same, whatever item it sits on). Ties count against the pair, as
    in scikit-learn's ``label_ranking_average_precision_score``, which with
    ``sample_weight = positives per item`` gives the same number. Items without a positive
    add nothing; raises when there is no positive at all.
    """
    scores, targets = _check_multilabel(scores, targets)
    n, c = scores.shape
    if not bool(targets.any()):
        raise ValueError("lwlrap: no positive label")
    rows = max(1, chunk_elements // max(1, c * c))
    total = 0.0
    for start in range(0, n, rows):
        s, t = scores[start : start + rows], targets[start : start + rows]
        at_least = s.unsqueeze(1) >= s.unsqueeze(2)  # [b, j, k]: class k scored >= class j
        rank = at_least.sum(2).double()
        hits = (at_least & t.unsqueeze(1)).sum(2).double()
        total += float((hits / rank)[t].sum())
    return total / float(targets.sum())
