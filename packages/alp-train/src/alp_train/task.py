"""The training task: the model and the objective as one module, one step of the protocol.

Engines wrap this module (DDP, DeepSpeed), so the objective's own parameters (a learnable
temperature, SigLIP's bias) are synchronised and saved like the model's.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn

from alp_objectives.base import Objective, as_objective
from alp_objectives.outputs import LossOutput

__all__ = ["TrainTask", "clip_ids", "to_device"]


def clip_ids(ids: list[str], device: torch.device) -> torch.Tensor:
    """Stable int64 ids from clip id strings, so objectives can find several captions per clip.

    Hashing (not enumerating) makes the same clip get the same id on every rank.
    """
    values = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=7).digest(), "little")
              for i in ids]
    return torch.tensor(values, dtype=torch.int64, device=device)


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


class TrainTask(nn.Module):
    """``forward(batch) -> LossOutput`` through the step protocol of :mod:`alp_objectives.base`.

    The batch gains ``clip_ids``, then what the objective prepares (decoder inputs); the model
    adds its outputs; the objective reads what it declared.
    """

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.objective: Objective = as_objective(objective)

    def compile_parts(self, **options: Any) -> None:
        """``torch.compile`` the model's encoders and decoder in place (``nn.Module.compile``:
        parameter names, hence checkpoints, stay as they are). The objective stays eager: its
        metrics read Python numbers."""
        for name in ("audio_encoder", "text_encoder", "caption_decoder"):
            part = getattr(self.model, name, None)
            if isinstance(part, nn.Module):
                part.compile(**options)

    @property
    def min_batch(self) -> int:
        """Contrastive objectives need in-batch negatives; captioning scores a single clip."""
        return 2 if "text_embeds" in self.objective.requires else 1

    def param_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """The model's groups (``model.param_groups()`` or one group) plus ``objective``."""
        declared = getattr(self.model, "param_groups", None)
        groups = (dict(declared()) if callable(declared)
                  else {"model": list(self.model.named_parameters())})
        groups = {g: [(f"model.{n}", p) for n, p in named] for g, named in groups.items()}
        groups["objective"] = [(f"objective.{n}", p) for n, p in self.objective.named_parameters()]
        return groups

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Move the batch to ``device``, add clip ids and what the objective prepares."""
        step = to_device(batch, device)
        step["clip_ids"] = clip_ids(step["ids"], device)
        step.update(self.objective.prepare(step))
        return step

    def forward(self, step: dict[str, Any]) -> LossOutput:
        """A prepared step → loss and metrics.

        A step carrying cached embedding gradients (gradient caching, see
        :mod:`alp_train.gradcache`) returns the surrogate ``sum(e * grad)`` instead, whose
        parameter gradients are the full-batch loss's.
        """
        replay = step.get("_grad_cache")
        step = dict(step)
        step.update(self.model(step))
        if replay is None:
            return self.objective.compute(step)
        surrogate = sum((step[k].to(replay[k].dtype) * replay[k]).sum()
                        for k in ("audio_embeds", "text_embeds"))
        if "full_step" in replay:
            surrogate = surrogate + self.objective.compute(replay["full_step"]).loss
        return LossOutput(loss=surrogate, metrics={})
