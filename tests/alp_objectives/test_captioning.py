"""Captioning loss against a slow loop reference (float64), CapPa inputs, mode mix, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from alp_objectives.captioning import IGNORE_INDEX, CaptioningLoss
from alp_objectives.configs import CaptioningConfig

BOS, PAD, EOS, MASK = 0, 1, 2, 9
VOCAB = 10

# Three captions, right-padded: lengths 5, 3 and 6 real tokens (BOS ... EOS).
TOKENS = torch.tensor([
    [BOS, 5, 6, 7, EOS, PAD],
    [BOS, 4, EOS, PAD, PAD, PAD],
    [BOS, 3, 3, 8, 4, EOS],
])


def make_loss(eps=0.1, p=0.0, **ids):
    ids = {"pad_id": PAD, "eos_id": EOS, "mask_id": MASK, "bos_id": BOS, **ids}
    return CaptioningLoss(CaptioningConfig(label_smoothing=eps, parallel_probability=p), **ids)


def reference_loss(logits, targets, eps):
    """Loop over tokens: (1 - eps) * -log p_y + eps * mean_k -log p_k, averaged over tokens."""
    total, count = 0.0, 0
    batch, length, vocab = logits.shape
    for b in range(batch):
        for t in range(length):
            y = int(targets[b, t])
            if y == IGNORE_INDEX:
                continue
            row = [float(x) for x in logits[b, t]]
            m = max(row)
            log_z = m + math.log(sum(math.exp(x - m) for x in row))
            nll = log_z - row[y]
            smooth = sum(log_z - x for x in row) / vocab
            total += (1 - eps) * nll + eps * smooth
            count += 1
    return total / count


def random_logits(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * 2


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("modes", [[False, False, False], [True, False, True], [True] * 3])
def test_matches_loop_reference(eps, modes):
    loss_fn = make_loss(eps)
    parallel = torch.tensor(modes)
    inputs = loss_fn.decoder_inputs(TOKENS, parallel=parallel)
    logits = random_logits((3, 5, VOCAB), seed=1)
    out = loss_fn(logits, inputs.targets, inputs.parallel)
    expected = reference_loss(logits, inputs.targets, eps)
    assert out.loss.item() == pytest.approx(expected, rel=1e-10)
    assert out.metrics["loss"] == pytest.approx(expected, rel=1e-10)
    n_real = 4 + 2 + 5 - sum(modes)  # each parallel row drops its EOS target
    assert out.metrics["n_tokens"] == n_real
    assert out.metrics["parallel_fraction"] == pytest.approx(sum(modes) / 3)


def test_gradients_match_reference_and_gradcheck():
    loss_fn = make_loss(0.1)
    targets = torch.tensor([[3, 1, IGNORE_INDEX], [IGNORE_INDEX, 0, 2]])
    logits = random_logits((2, 3, 4), seed=2).requires_grad_()
    loss_fn(logits, targets).loss.backward()
    numeric = torch.zeros_like(logits)
    eps = 1e-6
    for idx in torch.cartesian_prod(torch.arange(2), torch.arange(3), torch.arange(4)):
        i = tuple(int(x) for x in idx)
        for sign in (1, -1):
            bumped = logits.detach().clone()
            bumped[i] += sign * eps
            numeric[i] += sign * reference_loss(bumped, targets, 0.1) / (2 * eps)
    torch.testing.assert_close(logits.grad, numeric, rtol=1e-5, atol=1e-8)
    assert logits.grad[0, 2].abs().max() == 0 and logits.grad[1, 0].abs().max() == 0
    assert torch.autograd.gradcheck(
        lambda x: loss_fn(x, targets).loss, (logits.detach().requires_grad_(),))


def test_token_accuracy_per_mode_by_hand():
    targets = torch.tensor([
        [1, 2, 3, IGNORE_INDEX],   # AR: 2 of 3 right
        [0, 0, IGNORE_INDEX, IGNORE_INDEX],  # parallel: 0 of 2 right
        [3, 3, 3, 3],              # AR: 4 of 4 right
    ])
    predicted = torch.tensor([[1, 2, 0, 3], [1, 1, 0, 0], [3, 3, 3, 3]])
    logits = torch.nn.functional.one_hot(predicted, 4).double() * 5
    out = make_loss()(logits, targets, torch.tensor([False, True, False]))
    assert out.metrics["token_acc"] == pytest.approx(6 / 9)
    assert out.metrics["token_acc_ar"] == pytest.approx(6 / 7)
    assert out.metrics["token_acc_parallel"] == pytest.approx(0 / 2)
    assert out.metrics["n_tokens"] == 9
    only_ar = make_loss()(logits, targets)  # no parallel rows: that metric is omitted
    assert "token_acc_parallel" not in only_ar.metrics
    assert only_ar.metrics["token_acc_ar"] == pytest.approx(6 / 9)
    assert only_ar.metrics["parallel_fraction"] == 0.0


def test_prepare_autoregressive_and_parallel_rows():
    inputs = make_loss().decoder_inputs(TOKENS, parallel=torch.tensor([False, True, True]))
    # AR row: shifted, causal, padded targets ignored, EOS kept as a target.
    assert inputs.input_ids[0].tolist() == [BOS, 5, 6, 7, EOS]
    assert inputs.targets[0].tolist() == [5, 6, 7, EOS, IGNORE_INDEX]
    # Parallel rows: all mask at real input positions, pad kept, EOS target ignored.
    assert inputs.input_ids[1].tolist() == [MASK, MASK, MASK, PAD, PAD]
    assert inputs.targets[1].tolist() == [4, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX,
                                          IGNORE_INDEX]
    assert inputs.input_ids[2].tolist() == [MASK] * 5
    assert inputs.targets[2].tolist() == [3, 3, 8, 4, IGNORE_INDEX]
    assert inputs.causal.tolist() == [True, False, False]
    assert inputs.parallel.tolist() == [False, True, True]
    assert inputs.attention_mask.tolist() == [
        [True] * 5, [True, True, True, False, False], [True] * 5]
    assert inputs.input_ids.dtype == TOKENS.dtype


def test_attention_mask_lets_pad_share_the_eos_id():
    tokens = torch.tensor([[BOS, 5, EOS, EOS], [BOS, 6, 7, EOS]])  # GPT-2 style: pad == eos
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    loss_fn = make_loss(pad_id=EOS)
    inputs = loss_fn.decoder_inputs(tokens, mask, parallel=torch.tensor([False, True]))
    assert inputs.targets.tolist() == [[5, EOS, IGNORE_INDEX], [6, 7, IGNORE_INDEX]]
    assert inputs.input_ids.tolist() == [[BOS, 5, EOS], [MASK, MASK, MASK]]


@pytest.mark.parametrize("p, expected", [(0.0, 0), (1.0, 2000)])
def test_probability_extremes(p, expected):
    tokens = TOKENS[[0, 2]].repeat(1000, 1)
    inputs = make_loss(p=p).decoder_inputs(tokens, generator=torch.Generator().manual_seed(0))
    assert int(inputs.parallel.sum()) == expected
    assert torch.equal(inputs.causal, ~inputs.parallel)


def test_probability_mix_is_per_sample_and_seeded():
    tokens = TOKENS[[0, 2]].repeat(1000, 1)
    loss_fn = make_loss(p=0.5)
    first = loss_fn.decoder_inputs(tokens, generator=torch.Generator().manual_seed(7))
    again = loss_fn.decoder_inputs(tokens, generator=torch.Generator().manual_seed(7))
    other = loss_fn.decoder_inputs(tokens, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.parallel, again.parallel)
    assert torch.equal(first.input_ids, again.input_ids)
    assert not torch.equal(first.parallel, other.parallel)
    assert 900 < int(first.parallel.sum()) < 1100  # binomial(2000, 0.5): sd ~22
    par = first.parallel
    assert (first.input_ids[par] == MASK).all()
    assert torch.equal(first.input_ids[~par], tokens[~par, :-1])
    quarter = make_loss(p=0.25).decoder_inputs(tokens, generator=torch.Generator().manual_seed(7))
    assert 400 < int(quarter.parallel.sum()) < 600


def test_bf16_logits_are_scored_in_float32():
    inputs = make_loss().decoder_inputs(TOKENS)
    logits = random_logits((3, 5, VOCAB), seed=3)
    exact = make_loss()(logits, inputs.targets).loss
    low = make_loss()(logits.bfloat16(), inputs.targets).loss
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(exact.item(), rel=2e-2)


def test_config_and_token_id_validation():
    with pytest.raises(ValidationError):
        CaptioningConfig(label_smoothing=1.0)
    with pytest.raises(ValidationError):
        CaptioningConfig(parallel_probability=1.5)
    with pytest.raises(ValidationError):
        CaptioningConfig(mask_id=3)  # ids belong to the tokenizer, not the config
    assert CaptioningConfig().label_smoothing == 0.1
    with pytest.raises(ValueError, match="mask_id is required"):
        CaptioningLoss(CaptioningConfig(parallel_probability=0.5), pad_id=PAD, eos_id=EOS)
    with pytest.raises(ValueError, match="eos_id=12 is outside"):
        CaptioningLoss(pad_id=PAD, eos_id=12, vocab_size=VOCAB)
    ar_only = CaptioningLoss(pad_id=PAD, eos_id=EOS)
    assert not ar_only.decoder_inputs(TOKENS).parallel.any()
    with pytest.raises(ValueError, match="need a mask_id"):
        ar_only.decoder_inputs(TOKENS, parallel=torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize(
    "tokens, mask, match",
    [
        (torch.tensor([[BOS, 5, EOS], [BOS, EOS, PAD]]), None, r"rows \[1\] hold no caption"),
        (torch.tensor([[BOS, 5, EOS], [PAD, PAD, PAD]]), None, r"rows \[1\] hold no caption"),
        (torch.tensor([[BOS, 5, EOS]]), torch.tensor([[1, 0, 0]]), r"rows \[0\] hold no"),
        (torch.tensor([BOS, 5, EOS]), None, r"tokens must be an integer tensor of shape"),
        (torch.tensor([[0.0, 5.0, 2.0]]), None, r"tokens must be an integer tensor"),
        (torch.tensor([[BOS], [BOS]]), None, r"length >= 2"),
        (torch.zeros(0, 4, dtype=torch.long), None, r"tokens is empty"),
        (torch.tensor([[BOS, 5, EOS]]), torch.ones(1, 4), r"attention_mask must have the shape"),
        (torch.tensor([[BOS, -3, EOS]]), None, r"tokens row 0 holds negative ids"),
        (torch.tensor([[BOS, 5, EOS], [4, 5, EOS]]), None, r"row 1 does not start with bos_id"),
    ],
)
def test_bad_captions_name_the_tensor_and_row(tokens, mask, match):
    with pytest.raises(ValueError, match=match):
        make_loss().decoder_inputs(tokens, mask)


def test_prepare_rejects_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match="tokens row 2 holds ids >= vocab_size 8"):
        make_loss(mask_id=7, vocab_size=8).decoder_inputs(TOKENS)


GOOD_TARGETS = torch.tensor([[1, 2, IGNORE_INDEX], [3, IGNORE_INDEX, IGNORE_INDEX]])


@pytest.mark.parametrize(
    "logits, targets, parallel, match",
    [
        (torch.randn(2, 3), GOOD_TARGETS, None, r"logits must have shape \(batch, length, vocab"),
        (torch.randn(2, 4, 5), GOOD_TARGETS, None, r"targets must have shape .* \(2, 4\)"),
        (torch.randn(2, 3, 3), GOOD_TARGETS, None, r"targets row 1 holds ids outside .* \[0, 3\)"),
        (torch.full((2, 3, 5), float("nan")), GOOD_TARGETS, None, r"logits hold NaN or inf"),
        (torch.randn(2, 3, 5), torch.full((2, 3), IGNORE_INDEX), None, "no tokens to score"),
        (torch.randn(2, 3, 5), GOOD_TARGETS, torch.tensor([1, 0]), r"parallel must be a bool"),
        (torch.randn(2, 3, 5), GOOD_TARGETS, torch.ones(3, dtype=torch.bool), r"shape \(2,\)"),
        (torch.randn(2, 3, 5), GOOD_TARGETS.float(), None, r"targets must be an integer"),
        (torch.ones(2, 3, 5, dtype=torch.long), GOOD_TARGETS, None, r"logits must be floating"),
    ],
)
def test_bad_logits_name_the_tensor(logits, targets, parallel, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make_loss()(logits, targets, parallel)


def test_logits_vocab_checked_against_vocab_size():
    with pytest.raises(ValueError, match="vocab dim is 5, expected vocab_size 10"):
        make_loss(vocab_size=VOCAB)(torch.randn(2, 3, 5), GOOD_TARGETS)


def test_eval_mode_scores_every_row_autoregressively_and_draws_nothing():
    # in eval mode (a validation loss) the modes were drawn at random on every pass, from
    # the training's random stream
    loss_fn = CaptioningLoss(CaptioningConfig(parallel_probability=0.5), pad_id=1, eos_id=2,
                             mask_id=3, bos_id=0, vocab_size=20)
    tokens = torch.tensor([[0, 5, 6, 2, 1]] * 8)
    loss_fn.eval()
    state = torch.get_rng_state()
    for _ in range(3):
        assert not loss_fn.prepare({"caption_ids": tokens})["caption_parallel"].any()
    assert torch.equal(torch.get_rng_state(), state)
    loss_fn.train()
    drawn = [loss_fn.prepare({"caption_ids": tokens})["caption_parallel"] for _ in range(4)]
    assert any(d.any() for d in drawn)  # training still mixes the modes
