"""Loss workloads shared by the loss benchmarks, their RSS probe and the gloo peer process.

A case is one forward + backward of an objective on random inputs of the paper's sizes:
1024-d embeddings for the contrastive losses, the real 30,522-token BERT vocabulary and 32
caption positions for captioning.
"""

from __future__ import annotations

from collections.abc import Callable

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


def make_case(name: str, batch: int) -> Callable[[], float]:
    """A closure running one forward + backward of loss ``name`` at ``batch``; returns the loss."""
    torch.manual_seed(0)
    audio, text = _embeddings(batch)
    if name in ("infonce", "siglip"):
        loss_fn = InfoNCELoss() if name == "infonce" else SigLIPLoss(SigLIPConfig())

        def run() -> float:
            out = loss_fn(F.normalize(audio, dim=-1), F.normalize(text, dim=-1))
            out.loss.backward()
            return out.loss.item()

        return run

    captioning = CaptioningLoss(CaptioningConfig(parallel_probability=0.5), **IDS)
    loss_fn = captioning if name == "captioning" else WeightedSumLoss(
        {"infonce": (InfoNCELoss(), 1.0), "captioning": (captioning, 2.0)})
    if name not in ("captioning", "coca"):
        raise ValueError(f"unknown loss case {name!r}")
    prepared = captioning.prepare({"caption_ids": _captions(batch)})
    logits = torch.randn(batch, CAPTION_TOKENS - 1, VOCAB).requires_grad_()

    def run() -> float:
        step = {**prepared, "caption_logits": logits,
                "audio_embeds": F.normalize(audio, dim=-1),
                "text_embeds": F.normalize(text, dim=-1)}
        out = loss_fn.compute(step)
        out.loss.backward()
        return out.loss.item()

    return run


def naive_global_infonce(audio: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """The pattern the local loss replaces: every rank builds the global x global matrix."""
    all_audio, all_text = gather_with_grad(audio), gather_with_grad(text)
    logits = all_audio @ all_text.t() / 0.07
    labels = torch.arange(logits.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels))


def make_distributed_case(mode: str, local_batch: int, rank: int) -> Callable[[], float]:
    """One rank's forward + backward: ``local`` (InfoNCELoss) or ``naive-global``."""
    audio, text = _embeddings(local_batch, seed=rank)
    local = InfoNCELoss()

    def run() -> float:
        a, t = F.normalize(audio, dim=-1), F.normalize(text, dim=-1)
        loss = local(a, t).loss if mode == "local" else naive_global_infonce(a, t)
        loss.backward()
        return loss.item()

    return run


def saved_tensors(fn: Callable[[], float]) -> list[tuple[tuple[int, ...], int]]:
    """(shape, bytes) of every storage autograd keeps for backward during ``fn()``, once each."""
    seen: dict[int, tuple[tuple[int, ...], int]] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.nbytes():
            seen[storage.data_ptr()] = (tuple(t.shape), storage.nbytes())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return list(seen.values())


def saved_mb(fn: Callable[[], float], matrix: tuple[set[int], int] | None = None) -> float:
    """MiB autograd keeps for backward during ``fn()``; with ``matrix=(rows, cols)`` only the
    2-D tensors of a row count in ``rows`` and ``cols`` columns (similarity matrices)."""
    kept = [(shape, n) for shape, n in saved_tensors(fn)
            if matrix is None or (len(shape) == 2 and shape[0] in matrix[0]
                                  and shape[1] == matrix[1])]
    return round(sum(n for _, n in kept) / 2**20, 1)
