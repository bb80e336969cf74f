"""Contrastive gradient caching (the GradCache idea of Gao et al., 2021), exact, not approximate.

Plain gradient accumulation shrinks the set of in-batch negatives to each micro-batch. Here
the whole batch is embedded in chunks without a graph, the contrastive loss is computed on
the full batch of (detached) embeddings, and each chunk is then run again with a graph and
back-propagated with the cached embedding gradients as ``sum(e * d loss / d e)``. The
parameter gradients equal those of one big batch, at the memory of one chunk (plus the
B x E embeddings). Dropout draws are replayed from the RNG state saved per chunk. Models
with batch statistics (BatchNorm) are refused (:func:`check_per_sample`): per chunk they
would not be exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from alp_core import ConfigError
from alp_objectives.outputs import LossOutput

__all__ = ["EMBED_KEYS", "REPLAY_KEY", "check_per_sample", "chunks", "contrastive_grad_cache"]

EMBED_KEYS = ("audio_embeds", "text_embeds")
REPLAY_KEY = "_grad_cache"


def chunks(step: dict[str, Any], size: int) -> Iterator[dict[str, Any]]:
    """Slices of a step along the batch: tensors with the batch's first dim, and lists."""
    batch = len(step["ids"])
    for start in range(0, batch, size):
        part = {}
        for key, value in step.items():
            batched = (isinstance(value, torch.Tensor) and value.dim() > 0
                       and value.shape[0] == batch) or (isinstance(value, list)
                                                         and len(value) == batch)
            part[key] = value[start:start + size] if batched else value
        yield part


def _rng() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 -> fp32; fp32 and fp64 unchanged."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def check_per_sample(model: nn.Module) -> None:
    """Refuse a model whose training forward mixes the samples of a batch (batch
    normalisation): chunked, it normalises each chunk with that chunk's statistics and
    updates the running ones twice per chunk, so the gradients are not the batch's."""
    mixing = [name or type(model).__name__ for name, module in model.named_modules()
              if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if mixing:
        more = f" and {len(mixing) - 3} more" if len(mixing) > 3 else ""
        raise ConfigError(
            f"train.grad_cache: gradient caching is exact only for models that treat each "
            f"sample alone, but {', '.join(mixing[:3])}{more} normalise over the batch "
            "(BatchNorm); choose an encoder without batch statistics (e.g. transformer, "
            "zipformer) or leave train.grad_cache.chunk_size unset")


def contrastive_grad_cache(engine: Any, task: Any, step: dict[str, Any], chunk_size: int,
                           boundary: bool,
                           check: Callable[[torch.Tensor], None] | None = None) -> LossOutput:
    """Forward + backward of one contrastive batch in chunks; returns the full-batch loss.

    ``task`` is the unwrapped :class:`~alp_train.task.TrainTask`; the replays go through
    ``engine.forward`` (the wrapped module: DDP reduces gradients on the last chunk only).
    ``check(loss)`` sees the full-batch loss before any backward (the loop's non-finite
    check), so a NaN stops the step before it reaches a gradient.
    """
    parts = list(chunks(step, chunk_size))
    states: list[tuple[torch.Tensor, list[torch.Tensor] | None]] = []
    embeds: dict[str, list[torch.Tensor]] = {k: [] for k in EMBED_KEYS}
    with torch.no_grad():
        for part in parts:
            states.append(_rng())
            with engine.autocast():
                out = task.model(part)
            for key in EMBED_KEYS:
                embeds[key].append(out[key])
    after = _rng()
    # low-precision (autocast) embeddings are upcast for the loss; float64 stays float64
    cached = {k: _upcast(torch.cat(v).detach()).requires_grad_() for k, v in embeds.items()}
    result = task.objective.compute({**step, **cached})
    if check is not None:
        check(result.loss)
    result.loss.backward(inputs=list(cached.values()))
    grads: dict[str, torch.Tensor] = {}
    for key, value in cached.items():
        if value.grad is None:  # the objective did not read this embedding at all
            raise RuntimeError(f"gradient caching: the objective gave {key} no gradient")
        grads[key] = value.grad
    has_params = any(p.requires_grad for p in task.objective.parameters())
    offset = 0
    for i, part in enumerate(parts):
        n = len(part["ids"])
        replay: dict[str, Any] = {k: grads[k][offset:offset + n] for k in EMBED_KEYS}
        if has_params and i == len(parts) - 1:  # the objective's own parameters, once
            replay["full_step"] = {**step, **{k: v.detach() for k, v in cached.items()}}
        offset += n
        _set_rng(states[i])
        last = i == len(parts) - 1
        with engine.accumulate(boundary and last):
            surrogate = engine.forward({**part, REPLAY_KEY: replay})
            engine.backward(surrogate.loss)
    _set_rng(after)
    return result
