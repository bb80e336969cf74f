"""Linear probe: separable blobs, shuffled labels, determinism, missing keys, unseen classes;
the masked-mean frame path, the explicit validation split, the multi-label probe, and a
selection that never looks at the test split."""

from __future__ import annotations

import logging

import pytest
import torch

from alp_eval.configs import LinearProbeConfig
from alp_eval.context import EvalContext
from alp_eval.metrics import mean_average_precision
from alp_eval.probe import (
    LinearProbeTask,
    masked_mean_pool,
    train_linear_probe,
    train_multilabel_probe,
)

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


def test_masked_mean_pool_matches_a_loop_and_ignores_padding():
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(4, 6, 3, generator=gen)
    lengths = torch.tensor([6, 2, 0, 4])
    frames[1, 2:] = float("nan")  # padding may hold anything
    frames[3, 4:] = 1e30
    got = masked_mean_pool(frames, lengths)
    for b, n in enumerate(lengths.tolist()):
        want = frames[b, :n].mean(0) if n else torch.zeros(3)
        torch.testing.assert_close(got[b], want)
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    torch.testing.assert_close(masked_mean_pool(frames, mask), got)
    with pytest.raises(ValueError, match="lengths"):
        masked_mean_pool(frames, torch.ones(4, 5, dtype=torch.bool))


def _padded(pooled: torch.Tensor, seed: int, t: int = 5):
    """Frames whose valid part averages to ``pooled`` row-wise, padded with garbage."""
    gen = torch.Generator().manual_seed(seed)
    n, d = pooled.shape
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    frames = torch.full((n, t, d), float("nan"))
    for i, length in enumerate(lengths.tolist()):
        noise = torch.randn(length, d, generator=gen)
        frames[i, :length] = pooled[i] + noise - noise.mean(0)
    return frames, lengths


def test_frame_level_input_is_mean_pooled_over_valid_frames():
    x_tr, y_tr = _blobs(15, ["a", "b", "c"], seed=0)
    x_te, y_te = _blobs(10, ["a", "b", "c"], seed=1)
    y_train = torch.tensor([["a", "b", "c"].index(v["kind"]) for v in y_tr])
    y_test = torch.tensor([["a", "b", "c"].index(v["kind"]) for v in y_te])
    pooled = train_linear_probe(x_tr, y_train, x_te, y_test, 3, CONFIG)
    f_tr, l_tr = _padded(x_tr, 2)
    f_te, l_te = _padded(x_te, 3)
    framed = train_linear_probe(f_tr, y_train, f_te, y_test, 3, CONFIG,
                                valid_train=l_tr, valid_test=l_te)
    assert framed["weight_decay"] == pooled["weight_decay"]
    assert framed["accuracy"] == pytest.approx(pooled["accuracy"])
    assert framed["accuracy"] >= 0.96
    with pytest.raises(ValueError, match="mask"):
        train_linear_probe(x_tr, y_train, x_te, y_test, 3, CONFIG, valid_train=l_tr)


def test_explicit_validation_split_refits_on_train_plus_val():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(90, 6, generator=gen)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.7 * torch.randn(90, generator=gen) > 0).long()
    x_test = torch.randn(200, 6, generator=gen)
    y_test = (x_test[:, 0] + 0.5 * x_test[:, 1] > 0).long()
    one = LinearProbeConfig(weight_decays=(1e-2,), steps=100)
    split = train_linear_probe(x[:60], y[:60], x_test, y_test, 2, one, x_val=x[60:], y_val=y[60:])
    whole = train_linear_probe(x, y, x_test, y_test, 2, one)
    # one candidate: the refit on train + val is the probe fit on all 90 rows
    assert split["accuracy"] == pytest.approx(whole["accuracy"])
    assert split["chance"] == whole["chance"]
    with pytest.raises(ValueError, match="x_val and y_val"):
        train_linear_probe(x, y, x_test, y_test, 2, one, x_val=x[:5])


def _selection_data(seed: int):
    gen = torch.Generator().manual_seed(seed)
    x_train = torch.randn(60, 10, generator=gen)
    y_train = (x_train[:, 0] + 0.9 * torch.randn(60, generator=gen) > 0).long()
    x_test = torch.randn(80, 10, generator=gen)
    y_test = (x_test[:, 0] > 0).long()
    return x_train, y_train, x_test, y_test


GRID = LinearProbeConfig(weight_decays=(1e-4, 1e-2, 1.0, 30.0), steps=60)


@pytest.mark.parametrize("explicit_val", [False, True])
def test_selection_never_uses_the_test_split(explicit_val):
    x_train, y_train, x_test, y_test = _selection_data(6)
    extra = {"x_val": x_train[40:], "y_val": y_train[40:]} if explicit_val else {}
    xt, yt = (x_train[:40], y_train[:40]) if explicit_val else (x_train, y_train)
    base = train_linear_probe(xt, yt, x_test, y_test, 2, GRID, **extra)
    gen = torch.Generator().manual_seed(0)
    permuted = y_test[torch.randperm(len(y_test), generator=gen)]
    noise = 100 * torch.randn(x_test.shape, generator=gen)
    for x_te, y_te in ((x_test, permuted), (noise, y_test), (noise, 1 - y_test)):
        other = train_linear_probe(xt, yt, x_te, y_te, 2, GRID, **extra)
        assert other["weight_decay"] == base["weight_decay"]
        assert other["val_accuracy"] == base["val_accuracy"]
    # the test labels do reach the score, and the choice is a real one (not the whole grid tied)
    assert train_linear_probe(xt, yt, x_test, 1 - y_test, 2, GRID, **extra)["accuracy"] == (
        pytest.approx(1 - base["accuracy"])
    )
    assert base["weight_decay"] != 30.0


def _multilabel_data(n: int, seed: int, d: int = 8, c: int = 5):
    """Class k present when feature k is high (structured, learnable); class 4 never present."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = x[:, :c] + 0.3 * torch.randn(n, c, generator=gen) > 0.5
    y[:, c - 1] = False
    return x, y


def test_multilabel_probe_scores_map_and_beats_random_scores():
    x_train, y_train = _multilabel_data(150, 0)
    x_test, y_test = _multilabel_data(120, 1)
    out = train_multilabel_probe(x_train, y_train, x_test, y_test, CONFIG)
    assert set(out) == {"mAP", "micro_mAP", "lwlrap", "n_classes", "n_classes_without_positives",
                        "weight_decay", "val_mAP"}
    assert out["n_classes"] == 4 and out["n_classes_without_positives"] == 1
    assert out["mAP"] > 0.9 and out["micro_mAP"] > 0.9 and out["lwlrap"] > 0.9
    assert out["weight_decay"] in CONFIG.weight_decays
    # random scores sit near the positive rate: a clearly different figure
    random_scores = torch.rand(y_test.shape, generator=torch.Generator().manual_seed(2))
    assert mean_average_precision(random_scores, y_test)["mAP"] < 0.6
    again = train_multilabel_probe(x_train, y_train, x_test, y_test, CONFIG)
    assert again == out
    framed, lengths = _padded(x_train, 3)
    pooled_path = train_multilabel_probe(framed, y_train, x_test, y_test, CONFIG,
                                         valid_train=lengths)
    assert pooled_path["mAP"] == pytest.approx(out["mAP"], abs=1e-6)


def test_multilabel_selection_never_uses_the_test_split():
    x_train, y_train = _multilabel_data(100, 3)
    x_test, y_test = _multilabel_data(60, 4)
    base = train_multilabel_probe(x_train, y_train, x_test, y_test, GRID)
    shuffled = y_test[torch.randperm(60, generator=torch.Generator().manual_seed(1))]
    other = train_multilabel_probe(x_train, y_train, torch.randn(60, 8), shuffled, GRID)
    assert (other["weight_decay"], other["val_mAP"]) == (base["weight_decay"], base["val_mAP"])
    assert other["mAP"] < base["mAP"] - 0.2


def test_multilabel_probe_rejects_bad_targets():
    x, y = _multilabel_data(20, 0)
    with pytest.raises(ValueError, match="multi-hot"):
        train_multilabel_probe(x, y[:, 0], x, y)
    with pytest.raises(ValueError, match="0/1"):
        train_multilabel_probe(x, y.long() * 2, x, y)
