"""Pairwise sigmoid audio-text loss (SigLIP) with learnable logit scale and bias.

Every (audio, text) pair is an independent binary problem, so the loss needs no softmax over
the global batch. When distributed, the text chunks travel around the ring of ranks (rank r
sends to r + 1 and receives from r - 1, world - 1 times) and each rank scores its local audio
rows against one chunk at a time: the largest block is local x chunk, never global x global.

Both distributed modes take a different row count B_r on each rank (and B_r = 0 on some):
rank r's loss is its rows' sum over all texts divided by N / W (N = sum B_r over W ranks; by
B_r itself when all are equal), so the mean over the ranks, which DDP's gradient average
takes, is the single-process loss on the concatenated batch and its gradient the
one-big-batch gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from alp_objectives.base import (
    ContrastiveObjective,
    accept_0dim,
    full_precision,
    scalar_parameter,
    upcast,
)
from alp_objectives.configs import SigLIPConfig
from alp_objectives.distributed import (
    gather_ids,
    gather_sizes,
    gather_with_grad,
    row_offset,
    world_info,
)
from alp_objectives.outputs import LossOutput
from alp_objectives.validation import check_embeddings, check_ids, check_rank_embeddings


def _exchange(tensor: torch.Tensor, recv_rows: int, to_rank: int, from_rank: int) -> torch.Tensor:
    """Send ``tensor`` to ``to_rank`` and return the (recv_rows, ...) tensor from ``from_rank``.

    Empty chunks (a rank with no rows) are not sent: both sides know the row counts, so the
    receiver of an empty chunk posts no receive either.
    """
    received = tensor.new_empty((recv_rows, *tensor.shape[1:]))
    ops = []
    if tensor.shape[0]:
        ops.append(dist.P2POp(dist.isend, tensor.contiguous(), to_rank))
    if recv_rows:
        ops.append(dist.P2POp(dist.irecv, received, from_rank))
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()
    return received


class _RingPass(torch.autograd.Function):
    """Pass a chunk to the right neighbour; backward passes its gradient to the left one.

    The gradient of a chunk received from rank r - 1 belongs to r - 1's tensor, so the reverse
    ring returns it there (the NeighbourExchange idea of big_vision / open_clip).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, recv_rows: int) -> torch.Tensor:
        rank, world = dist.get_rank(), dist.get_world_size()
        ctx.send_rows = tensor.shape[0]
        return _exchange(tensor, recv_rows, (rank + 1) % world, (rank - 1) % world)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        rank, world = dist.get_rank(), dist.get_world_size()
        return _exchange(grad, ctx.send_rows, (rank - 1) % world, (rank + 1) % world), None


def ring_chunks(
    tensor: torch.Tensor, ids: torch.Tensor | None, sizes: list[int]
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor | None]]:
    """Yield (source rank, chunk, chunk ids) for every rank's ``tensor``, own chunk first.

    ``sizes`` holds every rank's row count. The chunks keep their gradient path to the
    owning rank; ids (when given) travel along without gradient.
    """
    rank, world = world_info()
    yield rank, tensor, ids
    for step in range(1, world):
        source = (rank - step) % world
        tensor = _RingPass.apply(tensor, sizes[source])
        if ids is not None:
            ids = _exchange(ids, sizes[source], (rank + 1) % world, (rank - 1) % world)
        yield source, tensor, ids


class SigLIPLoss(ContrastiveObjective):
    """Sigmoid loss over all audio-text pairs: -(1/B) sum_ij log sigmoid(z_ij (s <a_i,t_j> + b)).

    Input: ``audio_embeds`` (B, E) and ``text_embeds`` (B, E), row i of each from the same
    pair, and optionally ``clip_ids`` (B,) int64; z_ij is +1 where the ids match (the diagonal
    when no ids are given) and -1 elsewhere. Each rank's loss is its rows' part of the global
    sum over N / W (the module docstring). ``block_shapes`` lists the (rows, columns)
    of the logits blocks the last forward built.
    """

    def __init__(self, config: SigLIPConfig | None = None) -> None:
        super().__init__()
        self.config = config or SigLIPConfig()
        self._max_log_scale = math.log(self.config.max_logit_scale)
        init = math.log(self.config.init_logit_scale)
        if self.config.learnable:
            self.log_logit_scale: nn.Parameter | None = scalar_parameter(init)
            self.logit_bias: nn.Parameter | None = scalar_parameter(self.config.init_logit_bias)
        else:  # Python floats: exact in any dtype the embeddings come in
            self.log_logit_scale = None
            self.logit_bias = None
            self._fixed_scale = math.exp(min(init, self._max_log_scale))
        self.block_shapes: list[tuple[int, int]] = []

    @property
    def rank_weighted(self) -> bool:
        return self.config.distributed != "local"

    def logit_scale(self) -> torch.Tensor:
        """exp(t') clamped to ``max_logit_scale``."""
        if self.log_logit_scale is None:
            return torch.tensor(self._fixed_scale, dtype=torch.float64)
        return self.log_logit_scale[0].clamp(max=self._max_log_scale).exp()

    def bias(self) -> torch.Tensor:
        """The logit bias b."""
        if self.logit_bias is None:
            return torch.tensor(self.config.init_logit_bias, dtype=torch.float64)
        return self.logit_bias[0]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        accept_0dim(state_dict, prefix, ("log_logit_scale", "logit_bias"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        audio_embeds: torch.Tensor,
        text_embeds: torch.Tensor,
        clip_ids: torch.Tensor | None = None,
    ) -> LossOutput:
        # logits and loss in float32 even under bf16/fp16 autocast (see full_precision)
        with full_precision(audio_embeds.device):
            return self._loss(upcast(audio_embeds), upcast(text_embeds), clip_ids)

    def _loss(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor,
              clip_ids: torch.Tensor | None) -> LossOutput:
        _, world = world_info()
        if world > 1 and self.config.distributed != "local":  # a rank may have no rows
            check_rank_embeddings(audio_embeds=audio_embeds, text_embeds=text_embeds)
        else:
            check_embeddings(audio_embeds=audio_embeds, text_embeds=text_embeds)
        batch = audio_embeds.shape[0]
        if clip_ids is not None:
            check_ids(clip_ids, batch)
        scale = self.logit_scale().to(audio_embeds)
        bias = self.bias().to(audio_embeds)
        exchanged = world > 1 and self.config.distributed != "local"
        sizes = gather_sizes(batch, audio_embeds.device) if exchanged else [batch]

        total = audio_embeds.new_zeros(())
        # sum p(positive), #positives, #hits (logit > 0 exactly on the positives), #pairs
        stats = audio_embeds.new_zeros(4, dtype=torch.float64)
        self.block_shapes = []
        for text, positives in self._blocks(text_embeds, clip_ids, batch, sizes):
            logits = scale * audio_embeds @ text.t() + bias
            signs = positives.to(logits.dtype) * 2 - 1
            total = total - F.logsigmoid(signs * logits).sum()
            self.block_shapes.append((logits.shape[0], logits.shape[1]))
            with torch.no_grad():
                stats[:3] += torch.stack([torch.sigmoid(logits[positives]).sum().double(),
                                          positives.sum().double(),
                                          ((logits > 0) == positives).sum().double()])
                stats[3] += positives.numel()  # a host number: no copy to the device
        # the sum over this rank's pairs over its rows; with rows differing between ranks
        # over N / W rows instead: DDP averages the ranks' losses, and the average is then the
        # sum over all pairs / N (the one-big-batch loss and gradient)
        rows = batch if batch * len(sizes) == sum(sizes) else sum(sizes) / len(sizes)
        loss = total / max(rows, 1)  # a rank without rows: 0, still joined to the exchange
        if exchanged:  # the metrics of the global batch, the same on every rank
            dist.all_reduce(stats)
        with torch.no_grad():  # one device read for all the metrics
            numbers = torch.cat([stats, torch.stack([loss.detach(), scale.detach(),
                                                     bias.detach()]).double()]).tolist()
        pos_prob, pos_count, hits, pairs, value, scale_value, bias_value = numbers
        nan = float("nan")
        metrics = {"loss": value, "logit_scale": scale_value, "logit_bias": bias_value,
                   "pos_prob": pos_prob / pos_count if pos_count else nan,
                   "pair_acc": hits / pairs if pairs else nan}
        return LossOutput(loss=loss, metrics=metrics)

    def _blocks(
        self, text_embeds: torch.Tensor, clip_ids: torch.Tensor | None, batch: int,
        sizes: list[int],
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(text columns, boolean positives of the local rows) for each logits block;
        ``sizes``: every rank's rows (``[batch]`` when nothing is exchanged)."""
        rank, world = world_info()
        mode = self.config.distributed
        if world == 1 or mode == "local":
            yield text_embeds, _positives(clip_ids, clip_ids, batch, batch, own=True,
                                          device=text_embeds.device)
            return
        if mode == "chunked":
            for source, text, ids in ring_chunks(text_embeds, clip_ids, sizes):
                yield text, _positives(clip_ids, ids, batch, sizes[source],
                                       own=source == rank, device=text.device)
            return
        all_text = gather_with_grad(text_embeds, sizes)
        if clip_ids is not None:
            all_ids = gather_ids(clip_ids, sizes)
        else:  # one pair per clip: the own diagonal, offset past the lower ranks' rows
            all_ids = torch.arange(sum(sizes), device=all_text.device)
            offset = row_offset(sizes)
            clip_ids = all_ids[offset:offset + batch]
        yield all_text, clip_ids[:, None] == all_ids[None, :]


def _positives(
    ids: torch.Tensor | None, chunk_ids: torch.Tensor | None, rows: int, cols: int,
    own: bool, device: torch.device,
) -> torch.Tensor:
    """Boolean (rows, cols) mask of same-clip pairs; without ids only the own diagonal."""
    if ids is not None and chunk_ids is not None:
        return ids[:, None] == chunk_ids[None, :]
    if own:
        return torch.eye(rows, cols, dtype=torch.bool, device=device)
    return torch.zeros(rows, cols, dtype=torch.bool, device=device)
