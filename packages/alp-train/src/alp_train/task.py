"""The training task: the model and the objective as one module, one step of the protocol.

Engines wrap this module (DDP, DeepSpeed), so the objective's own parameters (a learnable
temperature, SigLIP's bias) are synchronised and saved like the model's.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import torch
from torch import nn

from alp_objectives.base import Objective, as_objective
from alp_objectives.outputs import LossOutput

__all__ = ["TrainTask", "clip_ids", "compile_regions", "to_device"]


def clip_ids(ids: list[str], device: torch.device) -> torch.Tensor:
    """Stable int64 ids from clip id strings, so objectives can find several captions per clip.

    Hashing (not enumerating) makes the same clip get the same id on every rank.
    """
    values = [int.from_bytes(hashlib.blake2b(i.encode(), digest_size=7).digest(), "little")
              for i in ids]
    return torch.tensor(values, dtype=torch.int64, device=device)


def compile_regions(part: nn.Module) -> list[nn.Module]:
    """The modules that ``train.compile=regional`` compiles one by one in ``part``.

    ``part.compile_regions()`` where the part declares it; else its repeated blocks: the
    members of every ``nn.ModuleList`` whose members are all of one class and built of
    modules themselves (a Transformer's layers, BERT's ``encoder.layer``, each Zipformer
    stack's layers; not a list of bare convolutions; lists of mixed classes are searched
    inside); else ``[part]``. Blocks of one class share one compiled graph per
    shape (their weights are the graph's inputs), so a deep stack compiles about as fast as
    one layer; what lies between the blocks stays eager.
    """
    declared = getattr(part, "compile_regions", None)
    if callable(declared):
        return list(declared())
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, nn.ModuleList) and len(child) \
                    and len({type(block) for block in child}) == 1 \
                    and next(iter(child[0].children()), None) is not None:
                found.extend(child)
            else:
                visit(child)

    visit(part)
    return found or [part]


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

    def compile_parts(self, regional: bool = False, **options: Any) -> dict[str, int]:
        """``torch.compile`` the model's encoders and decoder in place (``nn.Module.compile``:
        parameter names, hence checkpoints, stay as they are), each part whole or, with
        ``regional``, each of its :func:`compile_regions` (compiles far faster for deep
        stacks). ``options`` go to ``torch.compile``. The objective stays eager: its metrics
        read Python numbers. Returns the number of compiled modules per part."""
        if regional:
            # a region's input needs grad but is no leaf, and Dynamo reads its .grad while
            # tracing, which torch warns about once per region; nothing is wrong
            warnings.filterwarnings("ignore", message="The .grad attribute of a Tensor that "
                                    "is not a leaf Tensor", category=UserWarning,
                                    module=r"torch\.")
        compiled = {}
        for name in ("audio_encoder", "text_encoder", "caption_decoder"):
            part = getattr(self.model, name, None)
            if isinstance(part, nn.Module):
                regions = compile_regions(part) if regional else [part]
                for region in regions:
                    region.compile(**options)
                compiled[name] = len(regions)
        return compiled

    @property
    def rank_weighted(self) -> bool:
        """Whether the objective weights each rank's loss by its share of the global batch."""
        return bool(getattr(self.objective, "rank_weighted", False))

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
