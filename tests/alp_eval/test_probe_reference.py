"""The linear probes against scikit-learn's LogisticRegression (a test-only dependency).

The probe minimises ``mean loss + weight_decay / 2 * ||W||^2``; sklearn minimises
``C * sum loss + ||W||^2 / 2``: the same optimum at ``C = 1 / (n * weight_decay)`` (softmax with
three or more classes, and each class of the multi-label probe) and ``C = 2 / (n *
weight_decay)`` for two classes (two softmax columns are one logit with half the penalty).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alp_eval.probe as probe_module
from alp_eval.configs import LinearProbeConfig
from alp_eval.probe import (
    _standardise,
    fit_sigmoid_regression,
    fit_softmax_regression,
    train_linear_probe,
)

linear_model = pytest.importorskip("sklearn.linear_model")
preprocessing = pytest.importorskip("sklearn.preprocessing")

WD = 1e-2


def _sklearn(c: float):
    # tol far below what the comparison needs, and enough iterations: no ConvergenceWarning
    return linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=10_000)


def _well_conditioned(seed: int, n: int = 200, d: int = 5):
    """Standardised Gaussian features; labels drawn from a softmax of a random linear map
    (overlapping classes, so the optimum is finite and well inside the loss basin)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    w = torch.randn(d, 4, generator=gen, dtype=torch.float64)
    (x,) = _standardise(x)
    return x, w, gen


def test_softmax_fit_matches_sklearn_multinomial():
    x, w, gen = _well_conditioned(0)
    logits = 1.5 * x @ w
    y = torch.multinomial(torch.softmax(logits, 1), 1, generator=gen).reshape(-1)
    n = x.shape[0]
    weight, bias = fit_softmax_regression(x, y, 4, WD, steps=500)
    clf = _sklearn(1 / (n * WD)).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(weight.numpy(), clf.coef_.T, atol=1e-4)
    # intercepts are defined up to a common shift: compare them centred
    np.testing.assert_allclose(
        (bias - bias.mean()).numpy(), clf.intercept_ - clf.intercept_.mean(), atol=1e-4
    )
    probs = torch.softmax(x @ weight + bias, 1).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(x.numpy()), atol=1e-5)
    # a different C gives clearly different coefficients: the mapping is what is tested
    other = _sklearn(10 / (n * WD)).fit(x.numpy(), y.numpy())
    assert np.abs(weight.numpy() - other.coef_.T).max() > 1e-2


def test_two_class_softmax_matches_sklearn_binary_at_twice_c():
    x, _, gen = _well_conditioned(1)
    n = x.shape[0]
    y = (x[:, 0] - x[:, 1] + 0.7 * torch.randn(n, generator=gen, dtype=torch.float64) > 0).long()
    weight, bias = fit_softmax_regression(x, y, 2, WD, steps=500)
    clf = _sklearn(2 / (n * WD)).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose((weight[:, 1] - weight[:, 0]).numpy(), clf.coef_[0], atol=1e-4)
    np.testing.assert_allclose(
        torch.softmax(x @ weight + bias, 1).numpy(), clf.predict_proba(x.numpy()), atol=1e-5
    )


def test_sigmoid_fit_matches_one_sklearn_binary_model_per_class():
    x, w, gen = _well_conditioned(2)
    n = x.shape[0]
    y = (x @ w[:, :3] + torch.randn(n, 3, generator=gen, dtype=torch.float64)) > 0.3
    weight, bias = fit_sigmoid_regression(x, y, WD, steps=500)
    for c in range(3):
        clf = _sklearn(1 / (n * WD)).fit(x.numpy(), y[:, c].numpy())
        np.testing.assert_allclose(weight[:, c].numpy(), clf.coef_[0], atol=1e-4)
        assert float(bias[c]) == pytest.approx(float(clf.intercept_[0]), abs=1e-4)
        np.testing.assert_allclose(
            torch.sigmoid(x @ weight[:, c] + bias[c]).numpy(),
            clf.predict_proba(x.numpy())[:, 1], atol=1e-5,
        )


def _four_quadrants(n_per_class: int, seed: int, d: int = 6):
    """Four balanced classes centred on +-3 e_0 and +-3 e_1: linearly separable up to noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.zeros(4, d)
    centres[0, 0], centres[1, 0], centres[2, 1], centres[3, 1] = 3.0, -3.0, 3.0, -3.0
    y = torch.arange(4).repeat_interleave(n_per_class)
    x = centres[y] + 0.8 * torch.randn(len(y), d, generator=gen)
    return x, y


def _check_discriminative(out: dict[str, float]) -> None:
    """Chance 0.25, and any constant prediction scores 0.25 too: > 0.9 needs a real probe."""
    assert out["chance"] == pytest.approx(0.25)
    assert out["accuracy"] > 0.9
    assert out["macro_f1"] > 0.9


def test_probe_accuracy_equals_sklearn_and_beats_chance_and_constant():
    x_train, y_train = _four_quadrants(40, seed=0)
    x_test, y_test = _four_quadrants(50, seed=1)
    config = LinearProbeConfig(weight_decays=(WD,), steps=500)
    out = train_linear_probe(x_train, y_train, x_test, y_test, 4, config)
    _check_discriminative(out)
    # sklearn on the same train-standardised features, the probe's C mapping
    scaler = preprocessing.StandardScaler().fit(x_train.double().numpy())
    clf = _sklearn(1 / (len(y_train) * WD)).fit(
        scaler.transform(x_train.double().numpy()), y_train.numpy()
    )
    sk_pred = clf.predict(scaler.transform(x_test.double().numpy()))
    sk_acc = float((sk_pred == y_test.numpy()).mean())
    assert out["accuracy"] == pytest.approx(sk_acc, abs=1 / len(y_test))
    for constant in range(4):  # a constant class: the check above could not pass
        assert float((y_test == constant).double().mean()) == pytest.approx(0.25)


def test_the_check_fails_for_a_constant_probe(monkeypatch):
    """Guard on the guard: a probe whose weights stay zero predicts one class everywhere."""

    def constant_fit(x, y, num_classes, weight_decay, **kwargs):
        return (torch.zeros(x.shape[1], num_classes, dtype=x.dtype),
                torch.zeros(num_classes, dtype=x.dtype))

    monkeypatch.setattr(probe_module, "fit_softmax_regression", constant_fit)
    x_train, y_train = _four_quadrants(20, seed=0)
    x_test, y_test = _four_quadrants(20, seed=1)
    out = train_linear_probe(x_train, y_train, x_test, y_test, 4, LinearProbeConfig(steps=20))
    assert out["accuracy"] == pytest.approx(0.25)
    with pytest.raises(AssertionError):
        _check_discriminative(out)
