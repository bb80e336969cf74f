"""Attention-pooling probe on frozen frame-level features (the study's second protocol).

A few learned queries attend, with several heads, to the valid frames of each clip (B, T, D);
the query outputs are averaged and a linear layer gives the logits. Padding frames are zeroed
and masked out of the attention, so whatever they hold (even NaN) leaves the logits unchanged.
Single-label targets train with cross-entropy, multi-label (N, C) 0/1 targets with BCE.

Protocol: features are standardised with the mean and std of the valid frames of the train
(+ validation) rows. Every (lr, weight decay) of the config's grid trains, from the same seeded
initialisation and batch order, with AdamW on the train rows for up to ``epochs`` epochs; after
each epoch the validation rows are scored (accuracy, ties: lower cross-entropy; or macro mAP,
ties: lower BCE) and the best epoch is kept (early stopping, ``patience`` epochs without
improvement end the run). The grid point with the best kept validation score is the probe; it
is not refit, and the test split is scored once with it. Validation rows: ``x_val``/``y_val``
when given, else a seeded ``val_fraction`` of the train rows (stratified for single-label).
On the CPU the result is deterministic for a seed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_eval.configs import AttentionProbeConfig
from alp_eval.metrics import (
    accuracy,
    lwlrap,
    macro_f1,
    majority_rate,
    mean_average_precision,
)
from alp_eval.probe import (
    _multi_hot,
    _random_split,
    _threads_for,
    _validation_split,
    frame_mask,
)

__all__ = ["AttentionPoolingClassifier", "AttentionProbeConfig", "train_attention_probe"]

# Clips scored per forward pass when evaluating (bounds memory, not the result).
_EVAL_BATCH = 256


class AttentionPoolingClassifier(nn.Module):
    """Multi-head attention pooling with learned queries, then a linear classifier.

    ``forward(frames (B, T, D), valid)`` → (B, num_outputs) logits; ``valid`` is (B,) lengths,
    a (B, T) bool mask or None (all valid). A clip without valid frames pools to zeros.
    """

    def __init__(self, dim: int, num_outputs: int, num_heads: int = 4, num_queries: int = 1):
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"attention probe: dim ({dim}) must be divisible by num_heads ({num_heads})"
            )
        self.num_heads = num_heads
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, num_outputs)

    def pool(self, frames: Tensor, valid: Tensor | None = None) -> Tensor:
        """(B, T, D) frames → (B, D): the averaged query outputs."""
        if frames.dim() != 3:
            raise ValueError(f"attention probe expects (B, T, D) frames, got {frames.shape}")
        b, t, d = frames.shape
        heads, q = self.num_heads, self.queries.shape[0]
        mask = frame_mask(valid, b, t).to(frames.device)
        frames = frames.masked_fill(~mask.unsqueeze(-1), 0.0)
        keys = self.key(frames).view(b, t, heads, d // heads)
        values = self.value(frames).view(b, t, heads, d // heads)
        queries = self.queries.view(q, heads, d // heads)
        scores = torch.einsum("qhe,bthe->bhqt", queries, keys) * (d // heads) ** -0.5
        empty = ~mask.any(1)
        # a clip without frames attends uniformly to its zeroed padding (not NaN), then is zeroed
        blocked = ~mask & ~empty.unsqueeze(1)
        scores = scores.masked_fill(blocked[:, None, None, :], -math.inf)
        pooled = torch.einsum("bhqt,bthe->bqhe", scores.softmax(-1), values).reshape(b, q, d)
        pooled = self.out(pooled).mean(1)
        return pooled.masked_fill(empty.unsqueeze(-1), 0.0)

    def forward(self, frames: Tensor, valid: Tensor | None = None) -> Tensor:
        return self.head(self.pool(frames, valid))


@dataclass
class _Rows:
    """Frames (N, T, D), their (N, T) validity mask and targets of one set of clips."""

    frames: Tensor
    mask: Tensor
    y: Tensor

    def take(self, idx: Tensor) -> _Rows:
        return _Rows(self.frames[idx], self.mask[idx], self.y[idx])


def _rows(frames: Tensor, valid: Tensor | None, y: Tensor, name: str) -> _Rows:
    frames = torch.as_tensor(frames).detach().cpu().float()
    if frames.dim() != 3:
        raise ValueError(f"{name}: frames must be (N, T, D), got {tuple(frames.shape)}")
    if frames.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: frames ({frames.shape[0]} rows) and labels ({y.shape[0]}) disagree"
        )
    mask = frame_mask(valid, frames.shape[0], frames.shape[1])
    return _Rows(frames.masked_fill(~mask.unsqueeze(-1), 0.0), mask, y)


def _frame_stats(*rows: _Rows) -> tuple[Tensor, Tensor]:
    """Mean and std of every feature over the valid frames of ``rows`` (float64
    accumulation; the row sets may be padded to different lengths)."""
    valid = torch.cat([r.frames[r.mask] for r in rows]).double()
    if valid.shape[0] == 0:
        raise ValueError("attention probe: the train rows hold no valid frame")
    mean, std = valid.mean(0), valid.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return mean.float(), std.float()


def _standardised(rows: _Rows, mean: Tensor, std: Tensor) -> _Rows:
    frames = ((rows.frames - mean) / std).masked_fill(~rows.mask.unsqueeze(-1), 0.0)
    return _Rows(frames, rows.mask, rows.y)


@torch.no_grad()
def _logits(model: nn.Module, rows: _Rows, device: torch.device) -> Tensor:
    model.eval()
    out = [
        model(rows.frames[i : i + _EVAL_BATCH].to(device),
              rows.mask[i : i + _EVAL_BATCH].to(device)).float().cpu()
        for i in range(0, rows.frames.shape[0], _EVAL_BATCH)
    ]
    return torch.cat(out)


def _loss(logits: Tensor, y: Tensor, multilabel: bool) -> Tensor:
    if multilabel:
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="sum") / (
            logits.shape[0]
        )
    return F.cross_entropy(logits, y)


def _val_key(logits: Tensor, y: Tensor, multilabel: bool) -> tuple[float, float]:
    """(score, -loss) on the validation rows: higher is better."""
    loss = float(_loss(logits, y, multilabel))
    if multilabel:
        score = mean_average_precision(logits, y)["mAP"] if bool(y.any()) else 0.0
    else:
        score = accuracy(logits.argmax(1), y)
    return score, -loss


def _train_point(
    fit: _Rows, val: _Rows, num_outputs: int, multilabel: bool, lr: float, weight_decay: float,
    config: AttentionProbeConfig, seed: int, device: torch.device,
) -> tuple[nn.Module, tuple[float, float], int]:
    """Train one grid point; the model at its best validation epoch, that key and epoch."""
    # the CPU generator only: torch.manual_seed would also reseed every GPU, which
    # fork_rng(devices=[]) does not restore
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = AttentionPoolingClassifier(
            fit.frames.shape[2], num_outputs, config.num_heads, config.num_queries
        ).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    order = torch.Generator().manual_seed(seed + 1)
    best_key: tuple[float, float] | None = None
    best_state, best_epoch, stale = copy.deepcopy(model.state_dict()), 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        for idx in torch.randperm(fit.frames.shape[0], generator=order).split(config.batch_size):
            logits = model(fit.frames[idx].to(device), fit.mask[idx].to(device))
            loss = _loss(logits, fit.y[idx].to(device), multilabel)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        key = _val_key(_logits(model, val, device), val.y, multilabel)
        if best_key is None or key > best_key:
            best_key, best_epoch, stale = key, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if config.patience is not None and stale >= config.patience:
                break
    model.load_state_dict(best_state)
    assert best_key is not None
    return model, best_key, best_epoch


def train_attention_probe(
    frames_train: Tensor,
    y_train: Tensor,
    frames_test: Tensor,
    y_test: Tensor,
    num_classes: int | None = None,
    config: AttentionProbeConfig | None = None,
    seed: int | None = None,
    *,
    valid_train: Tensor | None = None,
    valid_test: Tensor | None = None,
    frames_val: Tensor | None = None,
    y_val: Tensor | None = None,
    valid_val: Tensor | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Train the attention-pooling probe by the module's protocol and score the test set.

    Single-label: ``y_*`` are class ids, ``y_train``/``y_val`` in ``[0, num_classes)``
    (test ids outside it count as errors); returns accuracy, macro_f1, chance, lr,
    weight_decay, val_accuracy and epoch (the kept one). Multi-label: ``y_*`` are (N, C) 0/1
    and ``num_classes`` may be None; returns mAP, micro_mAP, lwlrap, n_classes,
    n_classes_without_positives, lr, weight_decay, val_mAP and epoch. ``valid_*``: lengths or
    (N, T) masks of the frames (None: all valid). ``seed`` (default ``config.seed`` or 0)
    drives the split, the initialisation and the batch order.
    """
    config = config or AttentionProbeConfig()
    if seed is None:
        seed = config.seed or 0
    device = torch.device(device)
    y_train_t = torch.as_tensor(y_train)
    multilabel = y_train_t.dim() == 2
    if multilabel:
        ytr = _multi_hot(y_train_t, "y_train")
        yte = _multi_hot(y_test, "y_test", ytr.shape[1])
        yva = None if y_val is None else _multi_hot(y_val, "y_val", ytr.shape[1])
        num_outputs = ytr.shape[1]
    else:
        if num_classes is None:
            raise ValueError("single-label targets need num_classes")
        ytr = y_train_t.long().reshape(-1)
        yte = torch.as_tensor(y_test).long().reshape(-1)
        yva = None if y_val is None else torch.as_tensor(y_val).long().reshape(-1)
        for name, y in (("y_train", ytr), ("y_val", yva)):
            if y is not None and (int(y.min()) < 0 or int(y.max()) >= num_classes):
                raise ValueError(f"{name} ids must lie in [0, {num_classes})")
        num_outputs = num_classes
    train = _rows(frames_train, valid_train, ytr, "train")
    test = _rows(frames_test, valid_test, yte, "test")
    if train.frames.shape[0] < 2:
        raise ValueError("the attention probe needs at least 2 train rows")
    generator = torch.Generator().manual_seed(seed)
    if (frames_val is None) != (yva is None):
        raise ValueError("give both frames_val and y_val, or neither")
    if frames_val is not None and yva is not None:
        fit, val = train, _rows(frames_val, valid_val, yva, "val")
        stats_from = [fit, val]
    else:
        if multilabel:
            fit_idx, val_idx = _random_split(len(ytr), config.val_fraction, generator)
        else:
            fit_idx, val_idx = _validation_split(ytr, config.val_fraction, generator)
        fit, val, stats_from = train.take(fit_idx), train.take(val_idx), [train]
    mean, std = _frame_stats(*stats_from)
    fit, val, test = (_standardised(r, mean, std) for r in (fit, val, test))

    best: tuple[tuple[float, float], float, float, int, nn.Module] | None = None
    with _threads_for(fit.frames.numel()):
        for lr in config.lrs:
            for wd in config.weight_decays:
                model, key, epoch = _train_point(
                    fit, val, num_outputs, multilabel, lr, wd, config, seed, device
                )
                if best is None or key > best[0]:
                    best = (key, lr, wd, epoch, model)
        assert best is not None
        key, lr, wd, epoch, model = best
        test_logits = _logits(model, test, device)
    chosen = {"lr": float(lr), "weight_decay": float(wd), "epoch": float(epoch)}
    if multilabel:
        return {
            **mean_average_precision(test_logits, test.y),
            "lwlrap": lwlrap(test_logits, test.y),
            **chosen,
            "val_mAP": key[0] if bool(val.y.any()) else float("nan"),
        }
    pred = test_logits.argmax(1)
    return {
        "accuracy": accuracy(pred, test.y),
        "macro_f1": macro_f1(pred, test.y),
        "chance": majority_rate(torch.cat([r.y for r in stats_from]), test.y),
        **chosen,
        "val_accuracy": key[0],
    }
