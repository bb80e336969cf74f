"""The contrastive losses under bf16 autocast: logits and loss in float32.

Under autocast the (B, B) similarity would run in bf16, and InfoNCE's loss came out as a
bf16 number, 0.4 % from the exact one for 64 random pairs. Now the loss is float32 and
equals the float64 loss of the same (bf16) embeddings to float32 rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alp_objectives import InfoNCEConfig, InfoNCELoss, SigLIPConfig, SigLIPLoss
from alp_objectives.base import full_precision, upcast

LOSSES = {"infonce": lambda: InfoNCELoss(InfoNCEConfig()),
          "infonce-learnable": lambda: InfoNCELoss(InfoNCEConfig(learnable_temperature=True,
                                                                 embedding_regularizer=0.1)),
          "siglip": lambda: SigLIPLoss(SigLIPConfig())}


def _embeds(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(64, 32, generator=g), dim=-1)
    t = F.normalize(a + 0.5 * torch.randn(64, 32, generator=g), dim=-1)
    return a.bfloat16(), t.bfloat16()


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_under_bf16_autocast_is_the_full_precision_loss(name):
    loss_fn = LOSSES[name]()
    a, t = _embeds(3)
    a.requires_grad_(True)
    t.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss_fn(a, t)
    exact = loss_fn(a.detach().double(), t.detach().double()).loss
    assert out.loss.dtype == torch.float32
    assert out.loss.item() == pytest.approx(exact.item(), rel=1e-5)
    assert out.metrics["loss"] == pytest.approx(exact.item(), rel=1e-5)
    out.loss.backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad).all()
    # the gradient is the float64 one, rounded to the embeddings' bf16
    a64 = a.detach().double().requires_grad_(True)
    loss_fn(a64, t.detach().double()).loss.backward()
    torch.testing.assert_close(a.grad.double(), a64.grad, rtol=1e-2, atol=1e-4)


def test_full_precision_turns_autocast_off_only_where_it_is_on():
    x = torch.randn(4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (x @ x).dtype == torch.bfloat16
        with full_precision(x.device):
            assert (x @ x).dtype == torch.float32
        assert (x @ x).dtype == torch.bfloat16
    with full_precision(x.device):
        assert (x @ x).dtype == torch.float32
    with full_precision(torch.device("meta")):  # a device type autocast has no state for
        pass
    assert upcast(x.bfloat16()).dtype == torch.float32
    assert upcast(x.half()).dtype == torch.float32
    assert upcast(x.double()).dtype == torch.float64
