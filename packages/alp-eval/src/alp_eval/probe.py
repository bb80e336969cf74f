"""Linear probes on the frozen, mean-pooled encoder output: one multinomial logistic regression
per label key, its L2 penalty chosen on a held-out part of the train split."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alp_eval.configs import LinearProbeConfig
from alp_eval.context import EvalContext, TaskResult
from alp_eval.metrics import accuracy, macro_f1, majority_rate

__all__ = ["LinearProbeConfig", "LinearProbeTask", "train_linear_probe"]

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


def _standardise(x_train: Tensor, *others: Tensor) -> list[Tensor]:
    """Zero mean, unit variance with the train statistics (constant features are only centred)."""
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return [(x - mean) / std for x in (x_train, *others)]


def _fit(x: Tensor, y: Tensor, num_classes: int, weight_decay: float, config: LinearProbeConfig):
    """Full-batch L-BFGS on mean cross-entropy + ``weight_decay/2 * ||W||^2`` from zero init.

    The problem is convex and the start fixed, so the fit is deterministic.
    """
    weight = torch.zeros(x.shape[1], num_classes, dtype=x.dtype, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=config.lr,
        max_iter=config.steps,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return weight.detach(), bias.detach()


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


def train_linear_probe(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    num_classes: int,
    config: LinearProbeConfig | None = None,
    seed: int | None = None,
) -> dict[str, float]:
    """Fit a multinomial logistic-regression probe and score it on the test set.

    ``y_train`` holds ids in ``[0, num_classes)``; ``y_test`` ids outside that range are classes
    the probe never saw and count as errors. The weight decay with the best validation accuracy
    (ties: lower validation cross-entropy) on a stratified ``val_fraction`` of the train set is
    refit on all train data. Inputs are standardised with the whole train set's statistics.
    Returns accuracy, macro_f1, chance (test accuracy of the train-majority class),
    weight_decay and val_accuracy. ``seed`` (default: ``config.seed`` or 0) drives the split.
    """
    config = config or LinearProbeConfig()
    if seed is None:
        seed = config.seed or 0
    y_train = torch.as_tensor(y_train).long().reshape(-1)
    y_test = torch.as_tensor(y_test).long().reshape(-1)
    if x_train.shape[0] != y_train.numel() or x_test.shape[0] != y_test.numel():
        raise ValueError("train_linear_probe: features and labels disagree on the number of rows")
    if y_train.numel() < 2 or int(y_train.min()) < 0 or int(y_train.max()) >= num_classes:
        raise ValueError(f"y_train needs >= 2 ids in [0, {num_classes}); got {y_train.tolist()}")
    x_train, x_test = _standardise(x_train.detach().double().cpu(), x_test.detach().double().cpu())
    generator = torch.Generator().manual_seed(seed)
    with _threads_for(x_train.numel()):
        return _select_and_fit(x_train, y_train, x_test, y_test, num_classes, config, generator)


def _select_and_fit(
    x_train: Tensor,
    y_train: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    num_classes: int,
    config: LinearProbeConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Choose the weight decay on a validation split, refit on all train data, score the test."""
    fit_idx, val_idx = _validation_split(y_train, config.val_fraction, generator)
    best: tuple[float, float, float] | None = None
    for wd in config.weight_decays:
        weight, bias = _fit(x_train[fit_idx], y_train[fit_idx], num_classes, wd, config)
        logits = x_train[val_idx] @ weight + bias
        val_acc = accuracy(logits.argmax(1), y_train[val_idx])
        val_loss = float(F.cross_entropy(logits, y_train[val_idx]))
        if best is None or (val_acc, -val_loss) > (best[1], -best[2]):
            best = (wd, val_acc, val_loss)
    assert best is not None
    weight, bias = _fit(x_train, y_train, num_classes, best[0], config)
    pred = (x_test @ weight + bias).argmax(1)
    return {
        "accuracy": accuracy(pred, y_test),
        "macro_f1": macro_f1(pred, y_test),
        "chance": majority_rate(y_train, y_test),
        "weight_decay": float(best[0]),
        "val_accuracy": float(best[1]),
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
