"""Linear probes on frozen encoder features: multinomial (softmax) logistic regression for
single-label keys, independent sigmoids (binary cross-entropy) for multi-label targets.

Features are one vector per clip, or frame-level (N, T, D) with a validity mask (or lengths)
that :func:`masked_mean_pool` averages over the valid frames. Each fit is full-batch L-BFGS from
zero on ``mean loss + weight_decay / 2 * ||W||^2`` (bias not penalised): a convex problem with a
fixed start, so fits are deterministic.

Hyper-parameter search (the protocol): only the L2 strength is searched (the problem is convex
and L-BFGS runs with a line search, so there is no learning rate to tune). Each value of
``config.weight_decays`` is fit on the train rows and scored on the validation rows — an
explicit validation split (``x_val``/``y_val``) or else a seeded ``val_fraction`` of the train
split (stratified by class for single-label) — by accuracy (ties: lower validation
cross-entropy) or macro mAP (ties: lower validation BCE). The chosen value is refit on train +
validation; the test split is scored once, by that refit, and never seen before.
Standardisation uses the mean and std of the train + validation rows.

Equivalent scikit-learn model (``n`` = rows of the fit): ``LogisticRegression(C=1 / (n *
weight_decay))`` on the standardised features for three or more classes (sklearn minimises
``C * sum CE + ||W||^2 / 2``, which is ``n * C`` times this loss); for two classes the
two-column softmax equals sklearn's one-logit model at ``C = 2 / (n * weight_decay)``; a
multi-label probe is one binary ``LogisticRegression(C=1 / (n * weight_decay))`` per class
(the BCE is summed over classes and averaged over rows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alp_eval.configs import LinearProbeConfig
from alp_eval.context import EvalContext, TaskResult
from alp_eval.metrics import (
    accuracy,
    lwlrap,
    macro_f1,
    majority_rate,
    mean_average_precision,
)

__all__ = [
    "LinearProbeConfig",
    "LinearProbeTask",
    "fit_sigmoid_regression",
    "fit_softmax_regression",
    "frame_mask",
    "masked_mean_pool",
    "train_linear_probe",
    "train_multilabel_probe",
]

log = logging.getLogger(__name__)

# Below this many feature values a fit runs on one thread: intra-op threads only add
# synchronisation to such tiny matmuls, and on a busy machine they slow L-BFGS down many times.
SINGLE_THREAD_BELOW = 1 << 20


@contextmanager
def _threads_for(numel: int) -> Iterator[None]:
    """Use one intra-op thread for small problems; restore the previous setting afterwards."""
    previous = torch.get_num_threads()
    if numel < SINGLE_THREAD_BELOW and previous > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def frame_mask(valid: Tensor | None, batch: int, frames: int) -> Tensor:
    """A (batch, frames) bool mask, True at valid frames, from ``valid``.

    ``valid`` is None (every frame valid), (batch,) lengths (the first ``lengths[b]`` frames),
    or a (batch, frames) bool mask.
    """
    if valid is None:
        return torch.ones(batch, frames, dtype=torch.bool)
    valid = torch.as_tensor(valid).detach().cpu()
    if valid.dim() == 1 and valid.shape[0] == batch and not valid.dtype.is_floating_point:
        return torch.arange(frames).unsqueeze(0) < valid.long().unsqueeze(1)
    if valid.shape == (batch, frames) and valid.dtype == torch.bool:
        return valid
    raise ValueError(
        f"valid must be ({batch},) integer lengths or a ({batch}, {frames}) bool mask, got "
        f"{valid.dtype} {tuple(valid.shape)}"
    )


def masked_mean_pool(frames: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean over the valid frames: (N, T, D) + lengths or mask (see :func:`frame_mask`) → (N, D).

    Padded frames are ignored whatever they hold (even NaN); a row without valid frames pools
    to zeros.
    """
    if frames.dim() != 3:
        raise ValueError(f"masked_mean_pool expects frames (N, T, D), got {tuple(frames.shape)}")
    mask = frame_mask(valid, frames.shape[0], frames.shape[1]).to(frames.device)
    summed = frames.masked_fill(~mask.unsqueeze(-1), 0.0).sum(1)
    return summed / mask.sum(1, keepdim=True).clamp(min=1).to(summed.dtype)


def _features(x: Tensor, valid: Tensor | None, name: str) -> Tensor:
    """(N, D) float64 CPU features: pooled if ``x`` is frame-level (N, T, D)."""
    x = torch.as_tensor(x).detach().cpu()
    if x.dim() == 3:
        x = masked_mean_pool(x.double(), valid)
    elif x.dim() != 2 or valid is not None:
        raise ValueError(
            f"{name}: features must be (N, D), or (N, T, D) frames with an optional valid "
            f"mask; got {tuple(x.shape)}" + (" with a mask" if valid is not None else "")
        )
    return x.double()


def _standardise(x_train: Tensor, *others: Tensor) -> list[Tensor]:
    """Zero mean, unit variance with the train statistics (constant features are only centred)."""
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return [(x - mean) / std for x in (x_train, *others)]


def _lbfgs(
    x: Tensor,
    num_outputs: int,
    data_loss: Callable[[Tensor], Tensor],
    weight_decay: float,
    steps: int,
    lr: float,
) -> tuple[Tensor, Tensor]:
    """Minimise ``data_loss(x @ W + b) + weight_decay / 2 * ||W||^2`` from zero by L-BFGS."""
    weight = torch.zeros(x.shape[1], num_outputs, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_outputs, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=lr,
        max_iter=steps,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = data_loss(x @ weight + bias) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


def fit_softmax_regression(
    x: Tensor, y: Tensor, num_classes: int, weight_decay: float, *, steps: int = 200,
    lr: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression: (D, K) weight and (K,) bias minimising mean
    cross-entropy + ``weight_decay / 2 * ||W||^2`` (sklearn: ``C = 1 / (n * weight_decay)``)."""
    return _lbfgs(x, num_classes, lambda z: F.cross_entropy(z, y), weight_decay, steps, lr)


def fit_sigmoid_regression(
    x: Tensor, y: Tensor, weight_decay: float, *, steps: int = 200, lr: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Independent logistic regressions on (N, C) 0/1 targets: (D, C) weight and (C,) bias
    minimising the BCE summed over classes, averaged over rows, + ``weight_decay / 2 *
    ||W||^2`` (per class, sklearn's binary ``C = 1 / (n * weight_decay)``)."""
    n = x.shape[0]
    target = y.to(x.dtype)

    def data_loss(z: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(z, target, reduction="sum") / n

    return _lbfgs(x, target.shape[1], data_loss, weight_decay, steps, lr)


def _fit(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, config: LinearProbeConfig):
    return fit_softmax_regression(
        x, y, num_classes, weight_decay, steps=config.steps, lr=config.lr
    )


def _validation_split(
    y: Tensor, fraction: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Stratified (fit, val) index split; every class keeps at least one fit example."""
    fit, val = [], []
    for cls in torch.unique(y).tolist():
        idx = torch.nonzero(y == cls).reshape(-1)
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
        n_val = min(int(round(idx.numel() * fraction)), idx.numel() - 1)
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    fit_idx, val_idx = torch.cat(fit), torch.cat(val)
    if val_idx.numel() == 0:
        fit_idx, val_idx = fit_idx[1:], fit_idx[:1]
    return fit_idx.sort().values, val_idx.sort().values


def _random_split(n: int, fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Seeded (fit, val) index split of ``n`` rows; both parts keep at least one row."""
    perm = torch.randperm(n, generator=generator)
    n_val = min(max(int(round(n * fraction)), 1), n - 1)
    return perm[n_val:].sort().values, perm[:n_val].sort().values


def _check_rows(name: str, x: Tensor, y: Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{name}: features ({x.shape[0]} rows) and labels ({y.shape[0]} rows) disagree on "
            "the number of rows"
        )


def _with_validation(
    x_train: Tensor, y_train: Tensor, x_val: Tensor | None, y_val: Tensor | None,
    split: Callable[[], tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """All rows the probe may fit on (train + validation) and the fit / validation indices."""
    if (x_val is None) != (y_val is None):
        raise ValueError("give both x_val and y_val, or neither")
    if x_val is None or y_val is None:
        fit_idx, val_idx = split()
        return x_train, y_train, fit_idx, val_idx
    n_train, n_all = x_train.shape[0], x_train.shape[0] + x_val.shape[0]
    return (
        torch.cat([x_train, x_val]),
        torch.cat([y_train, y_val]),
        torch.arange(n_train),
        torch.arange(n_train, n_all),
    )


def train_linear_probe(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    num_classes: int,
    config: LinearProbeConfig | None = None,
    seed: int | None = None,
    *,
    x_val: Tensor | None = None,
    y_val: Tensor | None = None,
    valid_train: Tensor | None = None,
    valid_val: Tensor | None = None,
    valid_test: Tensor | None = None,
) -> dict[str, float]:
    """Fit a multinomial logistic-regression probe and score it on the test set.

    ``y_train`` (and ``y_val``) hold ids in ``[0, num_classes)``; ``y_test`` ids outside that
    range are classes the probe never saw and count as errors. The weight decay is chosen on the
    validation rows and refit on train + validation (module docstring; without ``x_val``, a
    stratified ``val_fraction`` of the train rows is the validation). Features are (N, D), or
    (N, T, D) frames mean-pooled over ``valid_*`` (lengths or masks, see :func:`frame_mask`).
    Returns accuracy, macro_f1, chance (test accuracy of the train-majority class),
    weight_decay and val_accuracy. ``seed`` (default: ``config.seed`` or 0) drives the split.
    """
    config = config or LinearProbeConfig()
    if seed is None:
        seed = config.seed or 0
    x_train = _features(x_train, valid_train, "x_train")
    x_test = _features(x_test, valid_test, "x_test")
    y_train = torch.as_tensor(y_train).long().reshape(-1)
    y_test = torch.as_tensor(y_test).long().reshape(-1)
    if x_train.shape[0] != y_train.numel() or x_test.shape[0] != y_test.numel():
        raise ValueError("train_linear_probe: features and labels disagree on the number of rows")
    if y_train.numel() < 2 or int(y_train.min()) < 0 or int(y_train.max()) >= num_classes:
        raise ValueError(f"y_train needs >= 2 ids in [0, {num_classes}); got {y_train.tolist()}")
    if x_val is not None:
        x_val = _features(x_val, valid_val, "x_val")
    if y_val is not None:
        y_val = torch.as_tensor(y_val).long().reshape(-1)
        if x_val is not None:
            _check_rows("validation", x_val, y_val)
        if y_val.numel() == 0 or int(y_val.min()) < 0 or int(y_val.max()) >= num_classes:
            raise ValueError(f"y_val needs >= 1 id, all in [0, {num_classes})")
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all, fit_idx, val_idx = _with_validation(
        x_train, y_train, x_val, y_val,
        lambda: _validation_split(y_train, config.val_fraction, generator),
    )
    x_all, x_test = _standardise(x_all, x_test)
    with _threads_for(x_all.numel()):
        return _select_and_fit(x_all, y_all, fit_idx, val_idx, x_test, y_test, num_classes, config)


def _select_and_fit(
    x_all: Tensor,
    y_all: Tensor,
    fit_idx: Tensor,
    val_idx: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    num_classes: int,
    config: LinearProbeConfig,
) -> dict[str, float]:
    """Choose the weight decay on the validation rows, refit on all rows, score the test."""
    best: tuple[float, float, float] | None = None
    for wd in config.weight_decays:
        weight, bias = _fit(x_all[fit_idx], y_all[fit_idx], num_classes, wd, config)
        logits = x_all[val_idx] @ weight + bias
        val_acc = accuracy(logits.argmax(1), y_all[val_idx])
        val_loss = float(F.cross_entropy(logits, y_all[val_idx]))
        if best is None or (val_acc, -val_loss) > (best[1], -best[2]):
            best = (wd, val_acc, val_loss)
    assert best is not None
    weight, bias = _fit(x_all, y_all, num_classes, best[0], config)
    pred = (x_test @ weight + bias).argmax(1)
    return {
        "accuracy": accuracy(pred, y_test),
        "macro_f1": macro_f1(pred, y_test),
        "chance": majority_rate(y_all, y_test),
        "weight_decay": float(best[0]),
        "val_accuracy": float(best[1]),
    }


def _multi_hot(y: Tensor, name: str, num_classes: int | None = None) -> Tensor:
    y = torch.as_tensor(y).detach().cpu()
    if y.dim() != 2 or (num_classes is not None and y.shape[1] != num_classes):
        raise ValueError(f"{name} must be (N, classes) multi-hot, got {tuple(y.shape)}")
    if y.dtype != torch.bool and bool(((y != 0) & (y != 1)).any()):
        raise ValueError(f"{name} must hold 0/1 only")
    return y != 0


def train_multilabel_probe(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    config: LinearProbeConfig | None = None,
    seed: int | None = None,
    *,
    x_val: Tensor | None = None,
    y_val: Tensor | None = None,
    valid_train: Tensor | None = None,
    valid_val: Tensor | None = None,
    valid_test: Tensor | None = None,
) -> dict[str, float]:
    """Fit a multi-label probe (one sigmoid per class, BCE) and score it on the test set.

    ``y_*`` are (N, C) 0/1 (multi-hot). The weight decay with the best validation macro mAP
    (ties, or no validation positive at all: lower validation BCE) is refit on train +
    validation (module docstring; without ``x_val``, a seeded random ``val_fraction`` of the
    train rows is the validation). Features as in :func:`train_linear_probe`. Returns the test
    ``mAP`` (macro over the classes with a test positive; the others are counted in
    ``n_classes_without_positives``), ``micro_mAP``, ``lwlrap``, ``n_classes``,
    ``weight_decay`` and ``val_mAP`` (NaN when the validation rows hold no positive).
    """
    config = config or LinearProbeConfig()
    if seed is None:
        seed = config.seed or 0
    x_train = _features(x_train, valid_train, "x_train")
    x_test = _features(x_test, valid_test, "x_test")
    y_train = _multi_hot(y_train, "y_train")
    y_test = _multi_hot(y_test, "y_test", y_train.shape[1])
    _check_rows("train", x_train, y_train)
    _check_rows("test", x_test, y_test)
    if x_train.shape[0] < 2:
        raise ValueError("train_multilabel_probe needs at least 2 train rows")
    if x_val is not None:
        x_val = _features(x_val, valid_val, "x_val")
    if y_val is not None:
        y_val = _multi_hot(y_val, "y_val", y_train.shape[1])
        if x_val is not None:
            _check_rows("validation", x_val, y_val)
    generator = torch.Generator().manual_seed(seed)
    x_all, y_all, fit_idx, val_idx = _with_validation(
        x_train, y_train, x_val, y_val,
        lambda: _random_split(x_train.shape[0], config.val_fraction, generator),
    )
    x_all, x_test = _standardise(x_all, x_test)
    with _threads_for(x_all.numel()):
        best: tuple[float, float, float] | None = None
        for wd in config.weight_decays:
            weight, bias = fit_sigmoid_regression(
                x_all[fit_idx], y_all[fit_idx], wd, steps=config.steps, lr=config.lr
            )
            logits = x_all[val_idx] @ weight + bias
            target = y_all[val_idx]
            val_map = (
                mean_average_precision(logits, target)["mAP"] if bool(target.any()) else 0.0
            )
            val_loss = float(
                F.binary_cross_entropy_with_logits(logits, target.double(), reduction="sum")
            ) / len(val_idx)
            if best is None or (val_map, -val_loss) > (best[1], -best[2]):
                best = (wd, val_map, val_loss)
        assert best is not None
        weight, bias = fit_sigmoid_regression(
            x_all, y_all, best[0], steps=config.steps, lr=config.lr
        )
        scores = x_test @ weight + bias
    out = mean_average_precision(scores, y_test)
    return {
        **out,
        "lwlrap": lwlrap(scores, y_test),
        "weight_decay": float(best[0]),
        "val_mAP": float(best[1]) if bool(y_all[val_idx].any()) else float("nan"),
    }


class LinearProbeTask:
    """One probe per label key of the clips, trained on ``ctx.train``, scored on ``ctx.test``.

    Clips without the key are left out of that task; test classes absent from train are errors
    (and count as classes in macro-F1). A key with fewer than two train classes, fewer than
    ``min_train`` train clips or no test clip is skipped with a logged reason.
    """

    def __init__(self, config: LinearProbeConfig | None = None) -> None:
        self.config = config or LinearProbeConfig()

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        """Probe every configured (or discovered) label key."""
        seed = ctx.seed if self.config.seed is None else self.config.seed
        keys = self.config.tasks
        if keys is None:
            keys = sorted({key for labels in ctx.train.labels for key in labels})
        results = []
        for key in keys:
            result = self._run_key(ctx, key, seed)
            if result is not None:
                results.append(result)
        return results

    def _run_key(self, ctx: EvalContext, key: str, seed: int) -> TaskResult | None:
        train_idx = [i for i, labels in enumerate(ctx.train.labels) if key in labels]
        test_idx = [i for i, labels in enumerate(ctx.test.labels) if key in labels]
        max_train = self.config.max_train
        if max_train is not None and len(train_idx) > max_train:
            perm = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(seed))
            train_idx = sorted(train_idx[i] for i in perm[:max_train].tolist())
        train_values = [str(ctx.train.labels[i][key]) for i in train_idx]
        test_values = [str(ctx.test.labels[i][key]) for i in test_idx]
        classes = sorted(set(train_values))
        reason = None
        if len(train_idx) < self.config.min_train:
            reason = f"{len(train_idx)} train clips carry it (need {self.config.min_train})"
        elif len(classes) < 2:
            reason = f"the train split has {len(classes)} class(es) (need 2)"
        elif not test_idx:
            reason = "no test clip carries it"
        if reason is not None:
            log.warning("probe/%s skipped: %s", key, reason)
            return None
        class_id = {c: i for i, c in enumerate(classes)}
        for value in sorted(set(test_values) - set(classes)):
            class_id[value] = len(class_id)
        y_train = torch.tensor([class_id[v] for v in train_values])
        y_test = torch.tensor([class_id[v] for v in test_values])
        out = train_linear_probe(
            ctx.train.pooled[train_idx],
            y_train,
            ctx.test.pooled[test_idx],
            y_test,
            len(classes),
            self.config,
            seed,
        )
        details: dict[str, Any] = {
            "n_train": len(train_idx),
            "n_test": len(test_idx),
            "n_classes": len(classes),
            "n_test_unseen_class": int((y_test >= len(classes)).sum()),
            "chance": out["chance"],
            "weight_decay": out["weight_decay"],
            "val_accuracy": out["val_accuracy"],
        }
        metrics = {"accuracy": out["accuracy"], "macro_f1": out["macro_f1"]}
        return TaskResult(f"probe/{key}", metrics, primary="accuracy", details=details)
