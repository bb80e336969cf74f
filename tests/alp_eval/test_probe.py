"""Linear probe: separable blobs, shuffled labels, determinism, missing keys, unseen classes."""

from __future__ import annotations

import logging

import pytest
import torch

from alp_eval.configs import LinearProbeConfig
from alp_eval.context import EvalContext
from alp_eval.probe import LinearProbeTask, train_linear_probe

CONFIG = LinearProbeConfig(steps=50)


def _blobs(n_per_class: int, classes: list[str], seed: int, dim: int = 8):
    """Gaussian blobs, well apart: class k is centred on 4 * e_k."""
    gen = torch.Generator().manual_seed(seed)
    xs, labels = [], []
    for k, name in enumerate(classes):
        center = torch.zeros(dim)
        center[k] = 4.0
        xs.append(center + 0.5 * torch.randn(n_per_class, dim, generator=gen))
        labels += [{"kind": name} for _ in range(n_per_class)]
    return torch.cat(xs), labels


def test_separable_blobs_are_classified(make_split):
    x_tr, y_tr = _blobs(20, ["a", "b", "c"], seed=0)
    x_te, y_te = _blobs(10, ["a", "b", "c"], seed=1)
    ctx = EvalContext(make_split(x_tr, y_tr), make_split(x_te, y_te), embed_text=None)
    (result,) = LinearProbeTask(CONFIG).run(ctx)
    assert result.task == "probe/kind" and result.primary == "accuracy"
    assert result.metrics["accuracy"] >= 0.96
    assert result.metrics["macro_f1"] >= 0.96
    assert result.details["n_train"] == 60 and result.details["n_test"] == 30
    assert result.details["n_classes"] == 3
    assert result.details["chance"] == pytest.approx(1 / 3)
    assert result.details["weight_decay"] in CONFIG.weight_decays


def test_shuffled_labels_give_near_chance():
    gen = torch.Generator().manual_seed(3)
    x_train, x_test = torch.randn(80, 16, generator=gen), torch.randn(400, 16, generator=gen)
    y_train = torch.randint(0, 2, (80,), generator=gen)
    y_test = torch.randint(0, 2, (400,), generator=gen)
    out = train_linear_probe(x_train, y_train, x_test, y_test, 2, CONFIG)
    assert abs(out["accuracy"] - 0.5) < 0.1
    assert set(out) == {"accuracy", "macro_f1", "chance", "weight_decay", "val_accuracy"}


def test_probe_is_deterministic():
    gen = torch.Generator().manual_seed(4)
    x_train, x_test = torch.randn(50, 6, generator=gen), torch.randn(30, 6, generator=gen)
    y_train = (x_train[:, 0] + 0.8 * torch.randn(50, generator=gen) > 0).long()
    y_test = (x_test[:, 0] > 0).long()
    runs = [train_linear_probe(x_train, y_train, x_test, y_test, 2, CONFIG) for _ in range(2)]
    assert runs[0] == runs[1]


def test_clips_without_the_key_are_skipped(make_split, caplog):
    x_tr, y_tr = _blobs(10, ["a", "b"], seed=0)
    x_te, y_te = _blobs(5, ["a", "b"], seed=1)
    for i, labels in enumerate(y_tr):
        labels["only_one"] = "same"  # a single class: this task is skipped
        if i % 2:
            del labels["kind"]
    y_te[0] = {}
    ctx = EvalContext(make_split(x_tr, y_tr), make_split(x_te, y_te), embed_text=None)
    with caplog.at_level(logging.WARNING, logger="alp_eval.probe"):
        results = LinearProbeTask(CONFIG).run(ctx)
    assert [r.task for r in results] == ["probe/kind"]
    assert results[0].details["n_train"] == 10 and results[0].details["n_test"] == 9
    assert "probe/only_one skipped" in caplog.text


def test_configured_key_missing_from_train_is_skipped(make_split, caplog):
    x, y = _blobs(5, ["a", "b"], seed=0)
    ctx = EvalContext(make_split(x, y), make_split(x, y), embed_text=None)
    with caplog.at_level(logging.WARNING, logger="alp_eval.probe"):
        results = LinearProbeTask(LinearProbeConfig(tasks=["kind", "mood"], steps=20)).run(ctx)
    assert [r.task for r in results] == ["probe/kind"]
    assert "probe/mood skipped" in caplog.text


def test_unseen_test_classes_count_as_errors(make_split):
    x_tr, y_tr = _blobs(20, ["a", "b"], seed=0)
    x_te, y_te = _blobs(10, ["a", "b", "z"], seed=1)
    ctx = EvalContext(make_split(x_tr, y_tr), make_split(x_te, y_te), embed_text=None)
    (result,) = LinearProbeTask(CONFIG).run(ctx)
    assert result.details["n_classes"] == 2
    assert result.details["n_test_unseen_class"] == 10
    assert result.metrics["accuracy"] == pytest.approx(20 / 30)
    # F1 of a and b stays high, z scores 0 but counts: macro-F1 well below accuracy of the seen
    assert result.metrics["macro_f1"] < 0.7


def test_max_train_subsamples_deterministically(make_split):
    x_tr, y_tr = _blobs(20, ["a", "b"], seed=0)
    x_te, y_te = _blobs(5, ["a", "b"], seed=1)
    ctx = EvalContext(make_split(x_tr, y_tr), make_split(x_te, y_te), embed_text=None, seed=7)
    task = LinearProbeTask(LinearProbeConfig(max_train=12, steps=30))
    first, second = task.run(ctx), task.run(ctx)
    assert first[0].details["n_train"] == 12
    assert first == second


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="epochs"):
        LinearProbeConfig(epochs=3)
    with pytest.raises(ValueError, match="weight_decays"):
        LinearProbeConfig(weight_decays=(-1.0,))
