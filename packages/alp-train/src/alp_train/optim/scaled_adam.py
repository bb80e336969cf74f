"""ScaledAdam: the parameter-scale-aware Adam variant that trains Zipformer.

Written after the rule in Yao et al., "Zipformer" (ICLR 2024) and the behaviour of icefall's
``egs/librispeech/ASR/zipformer/optim.py`` (Apache-2.0), as a plain per-parameter loop.
For every parameter tensor ``p`` with gradient ``g`` at step ``t`` (counted from 0):

1. Adam direction: ``v = b2*v + (1-b2)*g**2``; ``v_hat = v / (1 - b2**(t+1))`` while that
   correction is below 0.99, else ``v``; ``d = -lr * g / (sqrt(v_hat) + eps)``.
   One-element ("scalar") parameters use ``lr * scalar_lr_scale`` and skip steps 2-3.
2. Relative step: ``d *= max(rms, param_min_rms)``, where ``rms`` is the parameter's RMS,
   refreshed every ``size_update_period`` steps.  Updates are proportional to the size of
   the parameter, so one lr suits tensors of any scale.
3. Learned scale: the gradient w.r.t. the log of the parameter's scale, ``sum(p*g)``, is
   collected each step; every ``size_update_period`` steps an Adam-like step
   ``s = -lr*scalar_lr_scale*sqrt(bias_corr)*sum(scale_grads)/(sqrt(m2)+eps)`` (0 if
   ``rms < param_min_rms``, clamped to [-0.1, 0.1] and so that rms stays <= param_max_rms)
   is added as ``d += s * p``, i.e. the tensor is multiplied by ``1 + s``.
4. Momentum without bias correction: ``m = b1*m + (1-b1)*d``; ``p += m``; scalars are then
   clamped to ``[-scalar_max, scalar_max]``.

Before step 1, gradients of each param group may be clipped: the group's "normalised"
gradient norm ``sqrt(sum_scalar (g*scalar_lr_scale)**2 + sum_tensor (g*rms)**2)`` is kept for
the last ``clipping_update_period`` steps, and the threshold ``clipping_scale * median`` is
re-estimated at steps 10, 20, 40 (with a doubled threshold) and every
``clipping_update_period`` steps; until the first estimate there is no clipping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["ScaledAdam"]

# Steps at which icefall makes early (doubled) clipping-threshold estimates.
_EARLY_ESTIMATE_STEPS = (10, 20, 40)


def _rms(p: Tensor) -> Tensor:
    """Root-mean-square of all elements of ``p`` as a 0-dim tensor."""
    return p.detach().pow(2).mean().sqrt()


class ScaledAdam(Optimizer):
    """Adam whose updates are relative to each tensor's RMS and which learns tensor scales.

    Args:
        params: parameters or param groups (each group may set its own ``lr`` and other
            options).
        lr: learning rate; ScaledAdam's is large (0.045 in the study) because steps are
            relative to the parameter RMS.  Schedule it with :class:`alp_train.optim.eden.Eden`.
        clipping_scale: clip to this multiple of the median recent normalised gradient norm;
            ``None`` disables clipping.
        betas: momentum and second-moment decay constants.
        scalar_lr_scale: lr factor for one-element parameters and for the learned scales.
        eps: added to the root of second moments.
        param_min_rms: lower bound of the RMS used to scale updates; below it a tensor's
            scale is not shrunk further.
        param_max_rms: upper bound on a tensor's RMS enforced by the learned-scale step.
        scalar_max: one-element parameters are clamped to ``[-scalar_max, scalar_max]``.
        size_update_period: period, in steps, of the RMS refresh and learned-scale step.
        clipping_update_period: period, in steps, of the clipping-threshold estimate.

    Parameters whose ``.grad`` is ``None`` are skipped (as in ``torch.optim``), unlike
    icefall, which treats them as zero gradients.  State tensors have the parameter's dtype
    so that ``state_dict()``/``load_state_dict()`` restore them bit for bit.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.045,
        clipping_scale: float | None = 2.0,
        betas: tuple[float, float] = (0.9, 0.98),
        scalar_lr_scale: float = 0.1,
        eps: float = 1.0e-8,
        param_min_rms: float = 1.0e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 100,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid lr {lr}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"invalid betas {betas}")
        if clipping_scale is not None and clipping_scale <= 0.0:
            raise ValueError(f"clipping_scale must be positive or None, got {clipping_scale}")
        if size_update_period < 1 or clipping_update_period < 1:
            raise ValueError("size_update_period and clipping_update_period must be >= 1")
        if not 0.0 < param_min_rms < param_max_rms:
            raise ValueError("need 0 < param_min_rms < param_max_rms")
        defaults = dict(
            lr=lr,
            clipping_scale=clipping_scale,
            betas=betas,
            scalar_lr_scale=scalar_lr_scale,
            eps=eps,
            param_min_rms=param_min_rms,
            param_max_rms=param_max_rms,
            scalar_max=scalar_max,
            size_update_period=size_update_period,
            clipping_update_period=clipping_update_period,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None  # type: ignore[override]  # torch types the closure as returning float; ours returns the loss tensor
             ) -> Tensor | None:
        """Apply one update to every parameter that has a gradient; return the closure's loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("ScaledAdam does not support sparse gradients")
            factor = self._clipping_factor(group, params)
            for p in params:
                if factor == 0.0:  # non-finite norm: drop this step's gradients (as icefall)
                    grad = torch.zeros_like(p.grad)
                else:
                    grad = p.grad if factor == 1.0 else p.grad * factor
                self._update(group, p, grad)
        return loss

    def _clipping_factor(self, group: dict[str, Any], params: list[Tensor]) -> float:
        """Return the factor (<= 1) by which this step's gradients of ``group`` are scaled.

        The group's clipping statistics live in the state of its first parameter, so they are
        saved and restored with the rest of the optimizer state.
        """
        gstate = self.state[group["params"][0]]
        step = gstate.get("clip_step", 0)
        gstate["clip_step"] = step + 1
        clipping_scale = group["clipping_scale"]
        if clipping_scale is None or step == 0:
            return 1.0

        scalar_lr_scale = group["scalar_lr_scale"]
        dtype = torch.promote_types(params[0].dtype, torch.float32)
        sumsq = torch.zeros((), dtype=dtype, device=params[0].device)
        for p in params:
            grad = p.grad
            assert grad is not None  # the caller passes only parameters with a gradient
            if p.numel() == 1:
                sumsq += (grad.to(dtype) * scalar_lr_scale).pow(2).sum()
            else:
                rms = self.state[p]["param_rms"] if "param_rms" in self.state[p] else _rms(p)
                sumsq += (grad.to(dtype) * rms).pow(2).sum()
        norm = sumsq.sqrt()

        period = group["clipping_update_period"]
        if "clip_norms" not in gstate:
            owner = group["params"][0]  # its dtype, so that loading the state changes nothing
            gstate["clip_norms"] = torch.zeros(period, dtype=owner.dtype, device=owner.device)
        norms = gstate["clip_norms"]
        norms[step % period] = norm

        early = step in _EARLY_ESTIMATE_STEPS and step < period
        if early or step % period == 0:
            recent = norms.sort().values
            if early:
                recent = recent[-step:]  # only `step` norms have been recorded so far
            median = recent[min(recent.numel() - 1, 2 * (recent.numel() // 4))].item()
            if not math.isfinite(median):
                raise RuntimeError("too many gradient norms were not finite")
            gstate["clip_threshold"] = clipping_scale * median * (2.0 if early else 1.0)

        if "clip_threshold" not in gstate:
            return 1.0
        factor = min(1.0, gstate["clip_threshold"] / (norm.item() + 1.0e-20))
        return 0.0 if math.isnan(factor) else factor

    def _update(self, group: dict[str, Any], p: Tensor, grad: Tensor) -> None:
        """Apply steps 1-4 of the module docstring to one parameter."""
        state = self.state[p]
        if "step" not in state:
            self._init_state(group, p, state)
        t = state["step"]
        beta1, beta2 = group["betas"]
        is_scalar = p.numel() == 1

        lr = group["lr"] * (group["scalar_lr_scale"] if is_scalar else 1.0)
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        correction = 1.0 - beta2 ** (t + 1)
        second = exp_avg_sq / correction if correction < 0.99 else exp_avg_sq
        delta = -lr * grad / (second.sqrt() + group["eps"])

        if not is_scalar:
            delta = self._scale_terms(group, p, state, grad, delta, t)

        exp_avg = state["exp_avg"]
        exp_avg.mul_(beta1).add_(delta, alpha=1.0 - beta1)
        p.add_(exp_avg)
        if is_scalar:
            p.clamp_(min=-group["scalar_max"], max=group["scalar_max"])
        state["step"] = t + 1

    def _scale_terms(
        self,
        group: dict[str, Any],
        p: Tensor,
        state: dict[str, Any],
        grad: Tensor,
        delta: Tensor,
        t: int,
    ) -> Tensor:
        """Scale ``delta`` by the tensor's RMS and, periodically, add the learned-scale step."""
        period = group["size_update_period"]
        scale_grads = state["scale_grads"]
        scale_grads[t % period] = (p * grad).sum()  # d loss / d log(scale of p)
        end_of_period = t % period == period - 1
        param_rms = state["param_rms"]
        if end_of_period:
            param_rms.copy_(_rms(p))
        min_rms, max_rms = group["param_min_rms"], group["param_max_rms"]
        delta = delta * param_rms.clamp(min=min_rms)
        if not end_of_period or t == 0:
            return delta

        beta2 = group["betas"][1] ** period  # the scale moments are updated once per period
        scale_sq = state["scale_exp_avg_sq"]
        scale_sq.mul_(beta2).add_(scale_grads.pow(2).mean(), alpha=1.0 - beta2)
        correction = 1.0 - beta2 ** ((t + 1) // period)
        size_lr = group["lr"] * group["scalar_lr_scale"]
        denom = scale_sq.sqrt() + group["eps"]
        scale_step = -size_lr * correction**0.5 * scale_grads.sum() / denom
        # A tensor already below param_min_rms is not shrunk (or grown) by this term.
        scale_step = torch.where(param_rms < min_rms, torch.zeros_like(scale_step), scale_step)
        scale_step = scale_step.clamp(min=-0.1, max=0.1)
        scale_step = torch.minimum(scale_step, (max_rms - param_rms) / param_rms)
        return delta + p * scale_step

    @staticmethod
    def _init_state(group: dict[str, Any], p: Tensor, state: dict[str, Any]) -> None:
        """Create the zeroed moments (and, for tensors, the RMS and scale statistics)."""
        state["step"] = 0
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if p.numel() != 1:
            state["param_rms"] = _rms(p)
            state["scale_grads"] = torch.zeros(
                group["size_update_period"], dtype=p.dtype, device=p.device
            )
            state["scale_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
