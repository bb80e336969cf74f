"""Captioning objective: teacher-forced cross-entropy with a per-sample CapPa parallel mode.

The objective is model-agnostic. :meth:`CaptioningLoss.decoder_inputs` turns tokenised captions
into decoder inputs, targets and a per-sample attention mode; any caption decoder runs on those
and hands its logits back to :meth:`CaptioningLoss.forward`. In a training step
(:mod:`alp_objectives.base`) :meth:`CaptioningLoss.prepare` does this for the batch's
``caption_ids`` / ``caption_mask`` and the model returns ``caption_logits``.

In the autoregressive (AR) mode the decoder sees the caption shifted right under a causal mask;
in the parallel (CapPa) mode it sees only mask tokens, attends in full, and is not asked to
predict EOS.

Token ids come from the tokenizer, not from the run config, so they are constructor arguments:
the builder reads them off the tokenizer it is given and they can never disagree with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from alp_objectives.base import Objective
from alp_objectives.configs import CaptioningConfig
from alp_objectives.distributed import world_info
from alp_objectives.outputs import LossOutput

IGNORE_INDEX = -100
"""Target value of positions that carry no loss (padding; EOS in parallel mode)."""


@dataclass
class DecoderInputs:
    """What a caption decoder needs for one batch, and the targets its logits are scored on.

    ``input_ids`` (B, L-1): ``tokens[:, :-1]`` for AR rows; the mask id at every real position
    (padding kept as padding) for parallel rows. ``targets`` (B, L-1): ``tokens[:, 1:]`` with
    padding, and in parallel rows also EOS, set to :data:`IGNORE_INDEX`. ``attention_mask``
    (B, L-1) bool: True at real input positions (for key padding). ``causal`` (B,) bool: the
    decoder must use a causal mask for this row; ``parallel`` is its negation.
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    attention_mask: torch.Tensor
    causal: torch.Tensor
    parallel: torch.Tensor


def _check_tokens(
    tokens: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor | None:
    """Validate the caption batch; return ``attention_mask`` as bool (None when not given)."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor (batch, length), got {type(tokens)}")
    if tokens.dim() != 2 or tokens.is_floating_point() or tokens.dtype == torch.bool:
        raise ValueError(
            f"tokens must be an integer tensor of shape (batch, length), got "
            f"{tokens.dtype} {tuple(tokens.shape)}"
        )
    if tokens.shape[0] == 0:
        raise ValueError("tokens is empty (batch size 0); expected at least one caption")
    if tokens.shape[1] < 2:
        raise ValueError(
            f"tokens must have length >= 2 (BOS + at least one target), got {tuple(tokens.shape)}"
        )
    if attention_mask is None:
        return None
    if attention_mask.shape != tokens.shape:
        raise ValueError(
            f"attention_mask must have the shape of tokens {tuple(tokens.shape)}, got "
            f"{tuple(attention_mask.shape)}"
        )
    return attention_mask.to(device=tokens.device, dtype=torch.bool)


class CaptioningLoss(Objective):
    """Label-smoothed teacher-forced cross-entropy over caption tokens, AR and CapPa mixed.

    Build with the tokenizer's ``pad_id``, ``eos_id`` and ``mask_id`` (``mask_id`` may be
    omitted when ``parallel_probability`` is 0). ``vocab_size``, when given, is checked against
    the ids and the logits. Use :meth:`decoder_inputs` on the tokenised batch, run the decoder on
    ``input_ids`` (causal where ``causal``), then call the module on its logits.
    """

    inputs = {"logits": "caption_logits", "targets": "caption_targets",
              "parallel": "caption_parallel"}
    optional_inputs = frozenset({"parallel"})

    def __init__(
        self,
        config: CaptioningConfig | None = None,
        *,
        pad_id: int,
        eos_id: int,
        mask_id: int | None = None,
        bos_id: int | None = None,
        vocab_size: int | None = None,
    ) -> None:
        super().__init__()
        self.config = config or CaptioningConfig()
        if mask_id is None and self.config.parallel_probability > 0:
            raise ValueError(
                "mask_id is required when parallel_probability > 0 (parallel mode feeds mask "
                "tokens); pass the tokenizer's mask token id"
            )
        ids = {"pad_id": pad_id, "eos_id": eos_id, "mask_id": mask_id, "bos_id": bos_id}
        for name, value in ids.items():
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
            if vocab_size is not None and value >= vocab_size:
                raise ValueError(f"{name}={value} is outside the vocabulary [0, {vocab_size})")
        self.pad_id, self.eos_id, self.mask_id, self.bos_id = pad_id, eos_id, mask_id, bos_id
        self.vocab_size = vocab_size

    def draw_parallel(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Per-sample Bernoulli(parallel_probability) draw; p of 0 or 1 consumes no randomness."""
        p = self.config.parallel_probability
        if p <= 0.0 or p >= 1.0:
            return torch.full((batch,), p >= 1.0, dtype=torch.bool, device=device)
        rand_device = generator.device if generator is not None else device
        draw = torch.rand(batch, generator=generator, device=rand_device) < p
        return draw.to(device)

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Decoder inputs and targets for the batch's ``caption_ids`` (and ``caption_mask``).

        Modes are drawn per sample from the global torch generator (seeded by the run) in
        training; in eval mode every row is autoregressive, so a validation loss is the same on
        every pass and draws nothing from the training's random stream.
        """
        if "caption_ids" not in batch:
            raise KeyError(
                "captioning needs 'caption_ids' (B, L) in the batch: captions tokenised by the "
                f"caption decoder's tokenizer; the batch holds only {sorted(batch)}")
        tokens = batch["caption_ids"]
        fixed = None if self.training else torch.zeros(
            tokens.shape[0], dtype=torch.bool, device=tokens.device)
        prepared = self.decoder_inputs(tokens, batch.get("caption_mask"), parallel=fixed)
        return {
            "decoder_input_ids": prepared.input_ids,
            "decoder_attention_mask": prepared.attention_mask,
            "decoder_causal": prepared.causal,
            "caption_targets": prepared.targets,
            "caption_parallel": prepared.parallel,
        }

    @property
    def rank_weighted(self) -> bool:
        return self.config.sync_tokens

    def decoder_inputs(
        self,
        tokens: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        parallel: torch.Tensor | None = None,
    ) -> DecoderInputs:
        """Decoder inputs and targets for captions ``tokens`` (B, L) laid out BOS ... EOS pad.

        Real positions are ``attention_mask`` when given (needed when pad and EOS share an id),
        else ``tokens != pad_id``. Modes are drawn per sample from ``generator`` unless
        ``parallel`` (B,) bool fixes them (e.g. all False to score AR loss in evaluation).
        """
        mask = _check_tokens(tokens, attention_mask)
        real = tokens != self.pad_id if mask is None else mask
        batch = tokens.shape[0]
        in_real, tgt_real = real[:, :-1], real[:, 1:]
        is_eos = tgt_real & (tokens[:, 1:] == self.eos_id)
        content = (tgt_real & ~is_eos).sum(dim=1)
        if parallel is None:
            parallel = self.draw_parallel(batch, tokens.device, generator)
        elif parallel.shape != (batch,) or parallel.dtype != torch.bool:
            raise ValueError(
                f"parallel must be a bool tensor of shape ({batch},), got "
                f"{parallel.dtype} {tuple(parallel.shape)}"
            )
        parallel = parallel.to(tokens.device)
        # every check reads one flag per row; one device read for all of them (each
        # .any()/int() on a GPU tensor would wait for the device on its own)
        no_bos = (torch.zeros_like(parallel) if self.bos_id is None
                  else ~real[:, 0] | (tokens[:, 0] != self.bos_id))
        too_big = (torch.zeros_like(parallel) if self.vocab_size is None
                   else (tokens >= self.vocab_size).any(dim=1))
        flags = torch.stack([(tokens < 0).any(dim=1), too_big, content == 0, no_bos,
                             parallel]).tolist()
        negative, too_big_rows, empty, bad_bos, rows_parallel = (
            [i for i, flag in enumerate(row) if flag] for row in flags)
        if negative:
            raise ValueError(f"tokens row {negative[0]} holds negative ids; expected ids in "
                             "[0, vocab)")
        if too_big_rows:
            raise ValueError(f"tokens row {too_big_rows[0]} holds ids >= vocab_size "
                             f"{self.vocab_size}")
        if empty:
            raise ValueError(
                f"tokens rows {empty[:5]} hold no caption tokens (only BOS/EOS/padding); every "
                f"caption needs at least one real token after BOS"
            )
        if bad_bos:
            raise ValueError(f"tokens row {bad_bos[0]} does not start with bos_id {self.bos_id}")
        if rows_parallel and self.mask_id is None:
            raise ValueError("parallel rows need a mask_id; build CaptioningLoss with mask_id")

        rows = parallel[:, None]
        input_ids = tokens[:, :-1].clone()
        if self.mask_id is not None:
            masked = torch.full_like(input_ids, self.pad_id).masked_fill(in_real, self.mask_id)
            input_ids = torch.where(rows, masked, input_ids)
        ignored = ~tgt_real | (rows & is_eos)
        targets = tokens[:, 1:].masked_fill(ignored, IGNORE_INDEX)
        return DecoderInputs(
            input_ids=input_ids, targets=targets, attention_mask=in_real,
            causal=~parallel, parallel=parallel,
        )

    def forward(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        parallel: torch.Tensor | None = None,
    ) -> LossOutput:
        """Mean label-smoothed cross-entropy over all non-ignored target tokens of the batch
        (with ``sync_tokens`` over several ranks, weighted by the rank's share of the tokens).

        ``logits`` (B, T, V) from the decoder, ``targets`` (B, T) from :meth:`decoder_inputs`,
        ``parallel`` (B,) bool (None: all AR) only splits the token-accuracy metrics.
        Half-precision logits are scored in float32.
        """
        batch, length, vocab = self._check_logits(logits, targets, parallel)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()
        loss = F.cross_entropy(
            logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=IGNORE_INDEX,
            label_smoothing=self.config.label_smoothing, reduction="mean",
        )
        _, world = world_info()
        synced = world > 1 and self.config.sync_tokens
        with torch.no_grad():
            valid = targets != IGNORE_INDEX
            correct = (logits.argmax(dim=-1) == targets) & valid
            par = (torch.zeros(batch, dtype=torch.bool, device=targets.device)
                   if parallel is None else parallel.to(targets.device))
            rows = par[:, None]
            # token counts and hits of this rank: under sync_tokens summed over the ranks in
            # the one all-reduce the loss weighting needs, so the accuracies are the global
            # batch's (every rank reports the same value, and their mean is that value)
            counts = torch.stack([
                valid.sum(), correct.sum(), (valid & ~rows).sum(), (correct & ~rows).sum(),
                (valid & rows).sum(), (correct & rows).sum(), par.sum(),
                targets.new_full((), batch)]).double()
            mine = counts[0].clone()
            if synced:
                dist.all_reduce(counts)
        if synced:
            # ranks hold different token counts T_r: weight the rank's mean by W * T_r / T, so
            # the mean over ranks (DDP's gradient average) is the mean over all T tokens
            loss = loss * (world * mine / counts[0]).to(loss.dtype)
        with torch.no_grad():  # one device read for every metric
            numbers = torch.cat([loss.detach().double().reshape(1), counts]).tolist()
        value, n_tokens, n_correct, n_ar, ok_ar, n_par, ok_par, n_parallel, rows_seen = numbers
        # without sync_tokens on several ranks these are this rank's own
        metrics = {"loss": value, "token_acc": n_correct / n_tokens if n_tokens else
                   float("nan"), "n_tokens": n_tokens}
        for name, count, hits in (("token_acc_ar", n_ar, ok_ar),
                                  ("token_acc_parallel", n_par, ok_par)):
            if count:
                metrics[name] = hits / count
        metrics["parallel_fraction"] = n_parallel / rows_seen if rows_seen else float("nan")
        return LossOutput(loss=loss, metrics=metrics)

    def _check_logits(
        self, logits: torch.Tensor, targets: torch.Tensor, parallel: torch.Tensor | None
    ) -> tuple[int, int, int]:
        """Shapes, dtypes, finiteness and id range; returns (B, T, V)."""
        if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"logits must have shape (batch, length, vocab), got {got}")
        if not logits.is_floating_point():
            raise TypeError(f"logits must be floating point, got {logits.dtype}")
        batch, length, vocab = logits.shape
        if not isinstance(targets, torch.Tensor) or targets.shape != (batch, length):
            got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
            raise ValueError(
                f"targets must have shape (batch, length) = {(batch, length)}, got {got}"
            )
        if targets.is_floating_point() or targets.dtype == torch.bool:
            raise TypeError(f"targets must be an integer tensor, got {targets.dtype}")
        if self.vocab_size is not None and vocab != self.vocab_size:
            raise ValueError(f"logits vocab dim is {vocab}, expected vocab_size {self.vocab_size}")
        if parallel is not None and (parallel.shape != (batch,) or parallel.dtype != torch.bool):
            raise ValueError(
                f"parallel must be a bool tensor of shape ({batch},), got "
                f"{parallel.dtype} {tuple(parallel.shape)}"
            )
        valid = targets != IGNORE_INDEX
        bad_ids = valid & ((targets < 0) | (targets >= vocab))
        # one device read for the three checks: per row, any token to score, any id out of
        # range, any non-finite logit
        flags = torch.stack([valid.any(dim=1), bad_ids.any(dim=1),
                             (~torch.isfinite(logits)).flatten(1).any(dim=1)]).tolist()
        scored, out_of_range, non_finite = (
            [i for i, flag in enumerate(row) if flag] for row in flags)
        if not scored:
            raise ValueError(
                "targets hold no tokens to score (all padding / ignore_index); expected at least "
                "one caption token in the batch"
            )
        if out_of_range:
            raise ValueError(
                f"targets row {out_of_range[0]} holds ids outside the logits' vocabulary "
                f"[0, {vocab}) (or {IGNORE_INDEX} to ignore)"
            )
        if non_finite:
            raise ValueError(f"logits hold NaN or inf values (rows {non_finite[:5]}...)")
        return batch, length, vocab
