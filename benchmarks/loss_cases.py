"""Loss workloads shared by the loss benchmarks, their RSS probe and the gloo peer process.

A case is one forward + backward of an objective on random inputs of the paper's sizes:
1024-d embeddings for the contrastive losses, the real 30,522-token BERT vocabulary and 32
caption positions for captioning. Every call starts from cleared gradients (of the inputs and
of the loss's own parameters), as a training step after ``zero_grad`` does, so rounds do not
accumulate into the gradients of the rounds before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from alp_objectives import (
    CaptioningConfig,
    CaptioningLoss,
    InfoNCELoss,
    SigLIPConfig,
    SigLIPLoss,
    WeightedSumLoss,
)
from alp_objectives.distributed import gather_with_grad

EMBED_DIM = 1024
VOCAB = 30522
CAPTION_TOKENS = 32
IDS = {"bos_id": 101, "eos_id": 102, "pad_id": 0, "mask_id": 103, "vocab_size": VOCAB}


def _embeddings(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(batch, EMBED_DIM, generator=g).requires_grad_()
    text = torch.randn(batch, EMBED_DIM, generator=g).requires_grad_()
    return audio, text


def _captions(batch: int, seed: int = 0) -> torch.Tensor:
    """Token ids BOS w... EOS pad with lengths spread over 8..CAPTION_TOKENS."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1000, VOCAB, (batch, CAPTION_TOKENS), generator=g)
    lengths = torch.randint(8, CAPTION_TOKENS + 1, (batch,), generator=g)
    pos = torch.arange(CAPTION_TOKENS)
    tokens[:, 0] = IDS["bos_id"]
    tokens[pos[None] == (lengths[:, None] - 1)] = IDS["eos_id"]
    return tokens.masked_fill(pos[None] >= lengths[:, None], IDS["pad_id"])


class LossCase:
    """One forward + backward of a loss; calling it runs one step and returns the loss.

    ``prepare()`` builds what the caller hands the loss (the step: normalised embeddings,
    caption logits, ...) from the ``leaves``; ``loss(step)`` is the objective's forward. The
    split lets :func:`saved_tensors` watch the loss alone and leave the step's tensors out.
    """

    def __init__(self, leaves: Iterable[torch.Tensor], modules: Iterable[torch.nn.Module],
                 prepare: Callable[[], dict[str, Any]],
                 loss: Callable[[dict[str, Any]], torch.Tensor]) -> None:
        self.leaves = list(leaves)
        self.modules = list(modules)
        self.prepare = prepare
        self.loss = loss

    def zero_grad(self) -> None:
        """Drop the gradients of the inputs and of the loss parameters (set_to_none)."""
        for leaf in self.leaves:
            leaf.grad = None
        for module in self.modules:
            module.zero_grad(set_to_none=True)

    def __call__(self) -> float:
        self.zero_grad()
        loss = self.loss(self.prepare())
        loss.backward()
        return loss.item()


def make_case(name: str, batch: int) -> LossCase:
    """One forward + backward of loss ``name`` at ``batch`` (call it; it returns the loss)."""
    torch.manual_seed(0)
    audio, text = _embeddings(batch)

    def embeddings() -> dict[str, Any]:
        return {"audio_embeds": F.normalize(audio, dim=-1),
                "text_embeds": F.normalize(text, dim=-1)}

    if name in ("infonce", "siglip"):
        loss_fn = InfoNCELoss() if name == "infonce" else SigLIPLoss(SigLIPConfig())
        return LossCase([audio, text], [loss_fn], embeddings,
                        lambda step: loss_fn(**step).loss)

    captioning = CaptioningLoss(CaptioningConfig(parallel_probability=0.5), **IDS)
    loss_fn = captioning if name == "captioning" else WeightedSumLoss(
        {"infonce": (InfoNCELoss(), 1.0), "captioning": (captioning, 2.0)})
    if name not in ("captioning", "coca"):
        raise ValueError(f"unknown loss case {name!r}")
    prepared = captioning.prepare({"caption_ids": _captions(batch)})
    logits = torch.randn(batch, CAPTION_TOKENS - 1, VOCAB).requires_grad_()

    def step() -> dict[str, Any]:
        return {**prepared, "caption_logits": logits, **embeddings()}

    return LossCase([audio, text, logits], [loss_fn], step,
                    lambda step: loss_fn.compute(step).loss)


def naive_global_infonce(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The pattern the local loss replaces: every rank builds the global x global matrix."""
    all_audio, all_text = gather_with_grad(audio), gather_with_grad(text)
    logits = all_audio @ all_text.t() / 0.07
    labels = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def make_distributed_case(mode: str, local_batch: int, rank: int) -> LossCase:
    """One rank's forward + backward: ``local`` (InfoNCELoss) or ``naive-global``."""
    audio, text = _embeddings(local_batch, seed=rank)
    local = InfoNCELoss()

    def embeddings() -> dict[str, Any]:
        return {"audio": F.normalize(audio, dim=-1), "text": F.normalize(text, dim=-1)}

    def loss(step: dict[str, Any]) -> torch.Tensor:
        if mode == "local":
            return local(step["audio"], step["text"]).loss
        return naive_global_infonce(step["audio"], step["text"])

    return LossCase([audio, text], [local], embeddings, loss)


def saved_tensors(case: LossCase) -> list[tuple[tuple[int, ...], int]]:
    """(shape, bytes) of every storage the loss of one step of ``case`` keeps for backward,
    once each, beyond the caller's own tensors.

    The step's inputs are built outside the hooks, and a saved tensor that is an input (or a
    view sharing an input's storage, e.g. the caption logits reshaped) is not counted: the
    caller holds those anyway, so they cost the loss nothing. Runs the backward too, so that a
    distributed case completes its collectives.
    """
    case.zero_grad()
    step = case.prepare()
    own = {t.untyped_storage().data_ptr() for t in [*case.leaves, *step.values()]
           if isinstance(t, torch.Tensor)}
    seen: dict[int, tuple[tuple[int, ...], int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.nbytes() and storage.data_ptr() not in own:
            seen[storage.data_ptr()] = (tuple(t.shape), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = case.loss(step)
    loss.backward()
    return list(seen.values())


def saved_mb(case: LossCase, matrix: tuple[set[int], int] | None = None) -> float:
    """MiB the loss keeps for backward in one step of ``case`` (see :func:`saved_tensors`);
    with ``matrix=(rows, cols)`` only the 2-D tensors of a row count in ``rows`` and ``cols``
    columns (similarity matrices)."""
    kept = [(shape, n) for shape, n in saved_tensors(case)
            if matrix is None or (len(shape) == 2 and shape[0] in matrix[0]
                                  and shape[1] == matrix[1])]
    return round(sum(n for _, n in kept) / 2**20, 1)
