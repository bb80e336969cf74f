"""SigLIP against a slow loop reference (float64), gradcheck, parameters, clamp and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch.func import functional_call

from alp_objectives.configs import SigLIPConfig
from alp_objectives.siglip import SigLIPLoss


def reference_siglip(a, t, ids, scale, bias):
    """Loop over pairs: -(1/B) sum_ij log sigmoid(z_ij (scale <a_i, t_j> + bias))."""
    n = a.shape[0]
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if ids[i] == ids[j] else -1.0
            x = z * (scale * float(a[i].detach() @ t[j].detach()) + bias)
            # -log sigmoid(x) = log(1 + exp(-x)), written to stay finite for either sign of x
            total += math.log1p(math.exp(-x)) if x > 0 else -x + math.log1p(math.exp(x))
    return total / n


def unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("ids", [None, [0, 1, 2, 3, 4, 5], [7, 7, 3, 9, 3, 7]])
@pytest.mark.parametrize("learnable", [True, False])
def test_matches_loop_reference(ids, learnable):
    a, t = unit(6, 5, 1), unit(6, 5, 2)
    config = SigLIPConfig(init_logit_scale=4.0, init_logit_bias=-1.5, learnable=learnable)
    loss_fn = SigLIPLoss(config).double()
    out = loss_fn(a, t, None if ids is None else torch.tensor(ids))
    # a learnable t' was made in float32: the reference takes the scale it actually holds
    scale = loss_fn.logit_scale().item()
    assert scale == pytest.approx(4.0, rel=1e-7)
    expected = reference_siglip(a, t, ids or list(range(6)), scale, -1.5)
    assert out.loss.item() == pytest.approx(expected, rel=1e-10)
    assert out.metrics["loss"] == pytest.approx(expected, rel=1e-6)
    assert out.metrics["logit_scale"] == pytest.approx(4.0)
    assert out.metrics["logit_bias"] == pytest.approx(-1.5)
    assert loss_fn.block_shapes == [(6, 6)]


def test_metrics_positive_probability_and_pair_accuracy():
    a, t = unit(4, 3, 7), unit(4, 3, 8)
    ids = torch.tensor([1, 1, 2, 3])
    out = SigLIPLoss(SigLIPConfig(init_logit_scale=2.0, init_logit_bias=0.5)).double()(a, t, ids)
    logits = 2.0 * a @ t.t() + 0.5
    positives = ids[:, None] == ids[None, :]
    assert out.metrics["pos_prob"] == pytest.approx(torch.sigmoid(logits[positives]).mean().item())
    hits = ((logits > 0) == positives).double().mean().item()
    assert out.metrics["pair_acc"] == pytest.approx(hits)


def test_gradients_match_finite_differences_of_reference():
    a, t = unit(4, 3, 3).requires_grad_(), unit(4, 3, 4).requires_grad_()
    ids = [1, 2, 1, 3]
    loss_fn = SigLIPLoss(SigLIPConfig(init_logit_scale=3.0, init_logit_bias=-2.0)).double()
    with torch.no_grad():  # exactly log 3 in float64 (the float32 init is 1e-8 off)
        loss_fn.log_logit_scale.fill_(math.log(3.0))
    loss_fn(a, t, torch.tensor(ids)).loss.backward()
    eps = 1e-6
    for tensor in (a, t):
        numeric = torch.zeros_like(tensor)
        for i in range(4):
            for j in range(3):
                for sign in (1, -1):
                    bumped_a, bumped_t = a.detach().clone(), t.detach().clone()
                    (bumped_a if tensor is a else bumped_t)[i, j] += sign * eps
                    numeric[i, j] += sign * reference_siglip(
                        bumped_a, bumped_t, ids, 3.0, -2.0) / (2 * eps)
        torch.testing.assert_close(tensor.grad, numeric, rtol=1e-5, atol=1e-7)
    # the parameter is t' = log(scale): d/dt' = d/d(scale) * scale
    log_s = math.log(3.0)
    numeric_scale = (reference_siglip(a, t, ids, math.exp(log_s + eps), -2.0)
                     - reference_siglip(a, t, ids, math.exp(log_s - eps), -2.0)) / (2 * eps)
    numeric_bias = (reference_siglip(a, t, ids, 3.0, -2.0 + eps)
                    - reference_siglip(a, t, ids, 3.0, -2.0 - eps)) / (2 * eps)
    assert loss_fn.log_logit_scale.grad.item() == pytest.approx(numeric_scale, rel=1e-6)
    assert loss_fn.logit_bias.grad.item() == pytest.approx(numeric_bias, rel=1e-6)


@pytest.mark.parametrize("ids", [None, torch.tensor([5, 2, 5, 1, 2])])
def test_gradcheck_embeddings_and_parameters(ids):
    loss_fn = SigLIPLoss(SigLIPConfig(init_logit_scale=3.0, init_logit_bias=-1.0)).double()

    def loss(a, t, log_scale, bias):
        params = {"log_logit_scale": log_scale, "logit_bias": bias}
        return functional_call(loss_fn, params, (a, t, ids)).loss

    inputs = (unit(5, 4, 5), unit(5, 4, 6), torch.tensor([math.log(3.0)], dtype=torch.float64),
              torch.tensor([-1.0], dtype=torch.float64))
    assert torch.autograd.gradcheck(loss, tuple(x.requires_grad_() for x in inputs))


def test_published_initialisation_and_parameters():
    loss_fn = SigLIPLoss()
    assert [n for n, _ in loss_fn.named_parameters()] == ["log_logit_scale", "logit_bias"]
    assert isinstance(loss_fn.log_logit_scale, torch.nn.Parameter)
    assert loss_fn.log_logit_scale.item() == pytest.approx(math.log(10.0))
    assert loss_fn.logit_scale().item() == pytest.approx(10.0)
    assert loss_fn.bias().item() == pytest.approx(-10.0)
    out = loss_fn(unit(4, 3, 0).float(), unit(4, 3, 1).float())
    out.loss.backward()
    assert loss_fn.log_logit_scale.grad is not None and loss_fn.logit_bias.grad is not None

    fixed = SigLIPLoss(SigLIPConfig(learnable=False))
    assert list(fixed.parameters()) == []
    assert fixed.logit_scale().item() == pytest.approx(10.0)
    assert fixed.bias().item() == pytest.approx(-10.0)


def test_scale_is_clamped():
    config = SigLIPConfig(init_logit_scale=50.0, max_logit_scale=20.0)
    loss_fn = SigLIPLoss(config).double()
    assert loss_fn.logit_scale().item() == pytest.approx(20.0)
    a, t = unit(4, 3, 2), unit(4, 3, 3)
    out = loss_fn(a, t)
    assert out.loss.item() == pytest.approx(reference_siglip(a, t, range(4), 20.0, -10.0))
    out.loss.backward()
    assert loss_fn.log_logit_scale.grad.item() == 0.0  # held at the clamp
    fixed = SigLIPLoss(config.model_copy(update={"learnable": False}))
    assert fixed.logit_scale().item() == pytest.approx(20.0)


def test_perfect_alignment_gives_low_loss():
    e = unit(8, 16, 5).float()
    loss_fn = SigLIPLoss()
    assert loss_fn(e, e).loss.item() < loss_fn(e, unit(8, 16, 6).float()).loss.item()


@pytest.mark.parametrize(
    "options", [{"init_logit_scale": 0.0}, {"max_logit_scale": -1.0},
                {"distributed": "allreduce"}, {"temperature": 0.1}],
)
def test_bad_config_is_rejected(options):
    with pytest.raises(ValidationError):
        SigLIPConfig(**options)


@pytest.mark.parametrize(
    "audio, text, ids, match",
    [
        (torch.randn(4, 8), torch.randn(3, 8), None, "share one shape"),
        (torch.randn(4, 8), torch.randn(4, 6), None, "share one shape"),
        (torch.randn(4, 8, 2), torch.randn(4, 8), None, r"audio_embeds must have shape"),
        (torch.randn(4), torch.randn(4, 8), None, r"audio_embeds must have shape"),
        (torch.randn(4, 8), torch.full((4, 8), float("nan")), None, "text_embeds holds NaN"),
        (torch.full((4, 8), float("inf")), torch.randn(4, 8), None, "audio_embeds holds NaN"),
        (torch.randn(0, 8), torch.randn(0, 8), None, "audio_embeds is empty"),
        (torch.randn(4, 8), torch.randn(4, 8), torch.zeros(3, dtype=torch.long), "clip_ids"),
        (torch.randn(4, 8), torch.randn(4, 8), torch.zeros(4), "integer tensor"),
    ],
)
def test_bad_input_names_the_tensor(audio, text, ids, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SigLIPLoss()(audio, text, ids)


def test_scalars_are_one_element_parameters_and_old_0dim_checkpoints_load():
    from alp_objectives.configs import InfoNCEConfig
    from alp_objectives.contrastive import InfoNCELoss

    # (1,): DeepSpeed broadcasts each parameter as a byte view, which 0-dim tensors cannot give
    loss_fn = SigLIPLoss(SigLIPConfig(init_logit_scale=3.0, init_logit_bias=-1.0))
    assert loss_fn.log_logit_scale.shape == loss_fn.logit_bias.shape == (1,)
    assert loss_fn.logit_scale().shape == loss_fn.bias().shape == ()
    loss_fn.load_state_dict({"log_logit_scale": torch.tensor(math.log(7.0)),
                             "logit_bias": torch.tensor(-2.5)})  # as saved before
    assert loss_fn.logit_scale().item() == pytest.approx(7.0)
    assert loss_fn.bias().item() == -2.5
    infonce = InfoNCELoss(InfoNCEConfig(learnable_temperature=True))
    infonce.load_state_dict({"log_logit_scale": torch.tensor(math.log(20.0))})
    assert infonce.log_logit_scale.shape == (1,)
    assert infonce.logit_scale().item() == pytest.approx(20.0)
