"""InfoNCE against a slow loop reference (float64), gradcheck, options and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from alp_objectives import InfoNCEConfig, InfoNCELoss, embedding_regularizer


def reference_infonce(a, t, ids, temperature, reg_weight=0.0):
    """Loop over rows: -mean over positives' target mass of log softmax, both directions."""
    n = a.shape[0]
    total = []
    for q, k in ((a, t), (t, a)):
        row_losses = []
        for i in range(n):
            logits = [float(q[i] @ k[j]) / temperature for j in range(n)]
            m = max(logits)
            log_z = m + math.log(sum(math.exp(x - m) for x in logits))
            pos = [j for j in range(n) if ids[j] == ids[i]]
            row_losses.append(-sum((logits[j] - log_z) for j in pos) / len(pos))
        total.append(sum(row_losses) / n)
    loss = 0.5 * (total[0] + total[1])
    if reg_weight:
        for e in (a, t):
            loss += reg_weight * sum(
                float(e[i].abs().mean() / e[i].norm()) for i in range(n)) / n
    return loss


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("ids", [None, [0, 1, 2, 3, 4, 5], [7, 7, 3, 9, 3, 1]])
@pytest.mark.parametrize("reg", [0.0, 0.3])
def test_matches_loop_reference(ids, reg):
    a, t = unit(6, 5, 1), unit(6, 5, 2)
    loss_fn = InfoNCELoss(InfoNCEConfig(temperature=0.07, embedding_regularizer=reg)).double()
    id_tensor = None if ids is None else torch.tensor(ids)
    out = loss_fn(a, t, id_tensor)
    expected = reference_infonce(a, t, ids or list(range(6)), 0.07, reg)
    assert out.loss.item() == pytest.approx(expected, rel=1e-10)
    assert out.metrics["loss"] == pytest.approx(expected, rel=1e-6)


def test_gradients_match_reference_and_gradcheck():
    a, t = unit(5, 4, 3).requires_grad_(), unit(5, 4, 4).requires_grad_()
    ids = torch.tensor([1, 2, 1, 3, 4])
    loss_fn = InfoNCELoss(InfoNCEConfig(embedding_regularizer=0.1)).double()
    loss_fn(a, t, ids).loss.backward()
    eps = 1e-6
    for tensor in (a, t):
        numeric = torch.zeros_like(tensor)
        for idx in torch.cartesian_prod(torch.arange(5), torch.arange(4)):
            i, j = int(idx[0]), int(idx[1])
            for sign in (1, -1):
                bumped_a, bumped_t = a.detach().clone(), t.detach().clone()
                (bumped_a if tensor is a else bumped_t)[i, j] += sign * eps
                numeric[i, j] += sign * reference_infonce(
                    bumped_a, bumped_t, ids.tolist(), 0.07, 0.1) / (2 * eps)
        torch.testing.assert_close(tensor.grad, numeric, rtol=1e-5, atol=1e-7)
    assert torch.autograd.gradcheck(
        lambda x, y: loss_fn(x, y, ids).loss, (a.detach().requires_grad_(),
                                               t.detach().requires_grad_()))


def test_learnable_temperature_is_a_clamped_parameter():
    loss_fn = InfoNCELoss(InfoNCEConfig(temperature=0.07, learnable_temperature=True,
                                        max_logit_scale=10.0))
    assert [n for n, _ in loss_fn.named_parameters()] == ["log_logit_scale"]
    assert loss_fn.logit_scale().item() == pytest.approx(10.0)  # 1/0.07 > 10 is clamped
    out = loss_fn(unit(4, 3, 0).float(), unit(4, 3, 1).float())
    out.loss.backward()
    assert loss_fn.log_logit_scale.grad is not None
    fixed = InfoNCELoss()
    assert list(fixed.parameters()) == []
    assert fixed.logit_scale().item() == pytest.approx(1 / 0.07)


def test_regulariser_formula():
    e = torch.tensor([[3.0, -4.0], [1.0, 0.0]])
    assert embedding_regularizer(e).item() == pytest.approx(((3.5 / 5) + 0.5) / 2)


def test_perfect_alignment_gives_low_loss():
    e = unit(8, 16, 5).float()
    assert InfoNCELoss()(e, e).loss.item() < InfoNCELoss()(e, unit(8, 16, 6).float()).loss.item()


@pytest.mark.parametrize(
    "audio, text, ids, match",
    [
        (torch.randn(4, 8), torch.randn(3, 8), None, "share one shape"),
        (torch.randn(4, 8), torch.randn(4, 6), None, "share one shape"),
        (torch.randn(4, 8, 2), torch.randn(4, 8), None, r"audio_embeds must have shape"),
        (torch.randn(4, 8), torch.full((4, 8), float("nan")), None, "text_embeds holds NaN"),
        (torch.randn(0, 8), torch.randn(0, 8), None, "audio_embeds is empty"),
        (torch.randn(4, 8), torch.randn(4, 8), torch.zeros(3, dtype=torch.long), "clip_ids"),
        (torch.randn(4, 8), torch.randn(4, 8), torch.zeros(4), "integer tensor"),
    ],
)
def test_bad_input_names_the_tensor(audio, text, ids, match):
    with pytest.raises((ValueError, TypeError), match=match):
        InfoNCELoss()(audio, text, ids)
