"""Attention-pooling probe: padding is invisible, training is seeded, attention finds the one
informative frame that mean pooling dilutes, and selection never looks at the test split."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alp_eval.attention_probe import AttentionPoolingClassifier, train_attention_probe
from alp_eval.configs import AttentionProbeConfig, LinearProbeConfig
from alp_eval.probe import train_linear_probe

K = 4  # classes
CONFIG = AttentionProbeConfig(
    num_heads=2, epochs=12, batch_size=32, lrs=(3e-3, 1e-2), weight_decays=(1e-4,), patience=None
)


def _marker_task(n: int, seed: int, t: int = 12, d: int = 8):
    """Every frame holds a random class direction (a distractor), except one frame per clip,
    flagged by feature ``K``, whose class direction is the label. Mean pooling mixes the
    label's single frame with ~t distractors; attention can pick the flagged frame."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, K, (n,), generator=gen)
    frames = 0.5 * torch.randn(n, t, d, generator=gen)
    distractors = torch.randint(0, K, (n, t), generator=gen)
    frames[:, :, :K] += 2.0 * F.one_hot(distractors, K)
    lengths = torch.randint(t // 2, t + 1, (n,), generator=gen)
    key = (torch.rand(n, generator=gen) * lengths).long()
    rows = torch.arange(n)
    frames[rows, key, :K] = 0.5 * torch.randn(n, K, generator=gen)
    frames[rows, key, y] += 2.0
    frames[rows, key, K] += 3.0
    pad = torch.arange(t).unsqueeze(0) >= lengths.unsqueeze(1)
    frames[pad] = 50 * torch.randn(int(pad.sum()), d, generator=gen)  # garbage padding
    return frames, lengths, y


@pytest.fixture(scope="module")
def marker_data():
    return _marker_task(320, 0), _marker_task(200, 1)


@pytest.fixture(scope="module")
def base_run(marker_data):
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = marker_data
    return train_attention_probe(f_tr, y_tr, f_te, y_te, K, CONFIG, seed=0,
                                 valid_train=l_tr, valid_test=l_te)


def test_padding_frames_do_not_change_the_logits():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AttentionPoolingClassifier(8, 3, num_heads=2, num_queries=3).double().eval()
    gen = torch.Generator().manual_seed(1)
    frames = torch.randn(5, 7, 8, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([7, 3, 1, 5, 0])
    with torch.no_grad():
        logits = model(frames, lengths)
        garbage = frames.clone()
        garbage[torch.arange(7).unsqueeze(0) >= lengths.unsqueeze(1)] = float("nan")
        longer = torch.cat([garbage, 1e6 * torch.randn(5, 9, 8, generator=gen,
                                                       dtype=torch.float64)], dim=1)
        longer[:, -1] = float("inf")
        padded = model(longer, lengths)
        mask = torch.arange(16).unsqueeze(0) < lengths.unsqueeze(1)
        masked = model(longer, mask)
    assert torch.isfinite(padded).all()
    torch.testing.assert_close(padded, logits, rtol=0, atol=1e-12)
    torch.testing.assert_close(masked, logits, rtol=0, atol=1e-12)
    # a clip without frames pools to zeros: its logits are the classifier's bias
    torch.testing.assert_close(logits[4], model.head.bias.detach(), rtol=0, atol=1e-12)
    # the valid frames do matter
    changed = frames.clone()
    changed[1, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(changed, lengths)[1], logits[1])


def test_attention_probe_beats_the_mean_pooled_linear_probe(marker_data, base_run):
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = marker_data
    linear = train_linear_probe(f_tr, y_tr, f_te, y_te, K, LinearProbeConfig(steps=100),
                                valid_train=l_tr, valid_test=l_te)
    assert base_run["chance"] == linear["chance"] < 0.35
    assert base_run["accuracy"] > 0.9
    assert linear["accuracy"] < 0.6
    assert base_run["accuracy"] - linear["accuracy"] > 0.3
    assert base_run["lr"] in CONFIG.lrs and 1 <= base_run["epoch"] <= CONFIG.epochs


def test_selection_never_uses_the_test_split(marker_data, base_run):
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = marker_data
    gen = torch.Generator().manual_seed(3)
    permuted = y_te[torch.randperm(len(y_te), generator=gen)]
    noise = 10 * torch.randn(f_te.shape, generator=gen)
    for frames, labels in ((f_te, permuted), (noise, (y_te + 1) % K)):
        other = train_attention_probe(f_tr, y_tr, frames, labels, K, CONFIG, seed=0,
                                      valid_train=l_tr, valid_test=l_te)
        for key in ("lr", "weight_decay", "epoch", "val_accuracy"):
            assert other[key] == base_run[key], key
        assert other["accuracy"] < 0.5  # the test labels do reach the score


def test_training_is_deterministic_for_a_seed():
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = _marker_task(96, 4), _marker_task(40, 5)
    small = CONFIG.model_copy(update={"epochs": 3, "lrs": (1e-2,)})
    runs = [
        train_attention_probe(f_tr, y_tr, f_te, y_te, K, small, seed=7,
                              valid_train=l_tr, valid_test=l_te)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    # more padding (garbage) in every clip trains the same probe, up to rounding
    wider = torch.cat([f_tr, 1e3 * torch.randn(96, 5, f_tr.shape[2])], dim=1)
    padded = train_attention_probe(wider, y_tr, f_te, y_te, K, small, seed=7,
                                   valid_train=l_tr, valid_test=l_te)
    assert padded["val_accuracy"] == pytest.approx(runs[0]["val_accuracy"], abs=0.05)
    assert padded["accuracy"] == pytest.approx(runs[0]["accuracy"], abs=0.05)


def test_multilabel_targets_train_with_bce_and_score_map():
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = _marker_task(256, 8), _marker_task(120, 9)
    multi_tr, multi_te = F.one_hot(y_tr, K).bool(), F.one_hot(y_te, K).bool()
    config = CONFIG.model_copy(update={"lrs": (1e-2,), "epochs": 12})
    out = train_attention_probe(f_tr, multi_tr, f_te, multi_te, None, config, seed=0,
                                valid_train=l_tr, valid_test=l_te)
    assert out["n_classes"] == K and out["n_classes_without_positives"] == 0
    assert out["mAP"] > 0.9 and out["val_mAP"] > 0.8 and out["lwlrap"] > 0.9


def test_explicit_validation_split_and_bad_input():
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = _marker_task(64, 10), _marker_task(20, 11)
    small = CONFIG.model_copy(update={"epochs": 2, "lrs": (1e-2,)})
    out = train_attention_probe(f_tr[:48], y_tr[:48], f_te, y_te, K, small,
                                valid_train=l_tr[:48], valid_test=l_te,
                                frames_val=f_tr[48:], y_val=y_tr[48:], valid_val=l_tr[48:])
    assert 0 <= out["val_accuracy"] <= 1
    with pytest.raises(ValueError, match="frames_val and y_val"):
        train_attention_probe(f_tr, y_tr, f_te, y_te, K, small, frames_val=f_tr)
    with pytest.raises(ValueError, match="num_classes"):
        train_attention_probe(f_tr, y_tr, f_te, y_te, None, small)
    with pytest.raises(ValueError, match="divisible"):
        AttentionPoolingClassifier(10, 2, num_heads=4)
    with pytest.raises(ValueError, match="lrs"):
        AttentionProbeConfig(lrs=(0.0,))


def test_training_leaves_the_gpus_random_state_alone(monkeypatch):
    """The probe seeds its initialisation on the CPU generator only: torch.manual_seed
    would also reseed every GPU (lazily, even before CUDA starts), which fork_rng(devices=[])
    does not undo."""
    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = _marker_task(32, 4), _marker_task(16, 5)
    small = CONFIG.model_copy(update={"epochs": 1, "lrs": (1e-2,)})
    state = torch.get_rng_state()
    train_attention_probe(f_tr, y_tr, f_te, y_te, K, small, seed=7, valid_train=l_tr,
                          valid_test=l_te)
    assert reseeded == []
    assert torch.equal(torch.get_rng_state(), state)  # the CPU stream is left as it was


def test_validation_frames_padded_to_another_length_than_the_train_frames():
    """Each role's frames come padded to its own longest clip (ClipEmbeddings.frames_of):
    the standardisation statistics used to concatenate the padded tensors and failed."""
    (f_tr, l_tr, y_tr), (f_te, l_te, y_te) = _marker_task(48, 4), _marker_task(16, 5)
    small = CONFIG.model_copy(update={"epochs": 1, "lrs": (1e-2,)})
    f_va, y_va, l_va = f_tr[32:, :-2], y_tr[32:], l_tr[32:].clamp(max=f_tr.shape[1] - 2)
    out = train_attention_probe(f_tr[:32], y_tr[:32], f_te, y_te, K, small, seed=1,
                                valid_train=l_tr[:32], valid_test=l_te, frames_val=f_va,
                                y_val=y_va, valid_val=l_va)
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["val_accuracy"] <= 1.0
