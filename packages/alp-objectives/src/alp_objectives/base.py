"""The objective protocol: what a training step hands an objective, and what it gets back.

Each objective is a plain ``torch.nn.Module`` whose ``forward`` takes tensors by name and
returns a :class:`~alp_objectives.outputs.LossOutput`. So that one engine can drive any
objective, and hybrids can combine them, an :class:`Objective` also declares

- ``inputs``: which named values of the step its ``forward`` arguments read (``STEP_KEYS``
  lists the names and their shapes), and which of them are optional;
- ``prepare(batch)``: model inputs it derives from the collated batch before the model runs
  (captioning turns caption tokens into decoder inputs and targets); none by default;
- ``requires``: the model outputs the model must produce for it (``MODEL_OUTPUTS``).

A step is then::

    step = {**batch, **objective.prepare(batch)}
    step.update(model(step))               # audio_embeds, text_embeds, caption_logits, ...
    out = objective.compute(step)          # LossOutput(loss, metrics)

Modules that do not subclass :class:`Objective` still work through :func:`as_objective`, which
reads them as two-tower contrastive losses ``forward(audio_embeds, text_embeds, clip_ids)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn

from alp_objectives.outputs import LossOutput

STEP_KEYS: dict[str, str] = {
    "clip_ids": "(B,) int64, rows with one id share a clip (several captions per clip)",
    "caption_ids": "(B, L) int64 decoder-tokenizer ids laid out BOS ... EOS pad",
    "caption_mask": "(B, L) bool/int, True at real caption positions",
    "decoder_input_ids": "(B, L-1) int64, prepared by captioning: what the decoder reads",
    "decoder_attention_mask": "(B, L-1) bool, True at real decoder input positions",
    "decoder_causal": "(B,) bool, True rows use a causal mask (False: CapPa parallel)",
    "caption_targets": "(B, L-1) int64 targets, -100 where no loss is taken",
    "caption_parallel": "(B,) bool, rows trained in the parallel (CapPa) mode",
    "audio_embeds": "(B, E) unit-norm pooled audio embeddings (model output)",
    "text_embeds": "(B, E) unit-norm caption embeddings (model output)",
    "caption_logits": "(B, L-1, V) caption decoder logits (model output)",
    "audio_frames": "(B, T, D) audio encoder frames (model output)",
    "audio_lengths": "(B,) int64 valid frames per row (model output)",
}
"""Names an objective may read from a training step, with their shapes."""

MODEL_OUTPUTS = frozenset(
    {"audio_embeds", "text_embeds", "caption_logits", "audio_frames", "audio_lengths"})
"""The step values a model produces (the rest come from the batch or from ``prepare``)."""


def to_loss_output(result: Any, owner: str = "objective") -> LossOutput:
    """Normalise what an objective returned: a LossOutput, a dict with 'loss', or a tensor."""
    if isinstance(result, LossOutput):
        loss, metrics = result.loss, dict(result.metrics)
    elif isinstance(result, torch.Tensor):
        loss, metrics = result, {}
    elif isinstance(result, Mapping) and "loss" in result:
        loss = result["loss"]
        metrics = {k: float(v) for k, v in result.items() if k != "loss"}
    elif hasattr(result, "loss"):
        loss, metrics = result.loss, dict(getattr(result, "metrics", {}) or {})
    else:
        raise TypeError(f"{owner} returned {type(result).__name__}; expected a LossOutput, a "
                        "dict with a 'loss' tensor, or a scalar loss tensor")
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        got = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"{owner} loss must be a scalar tensor, got {got}")
    if "loss" not in metrics:  # (setdefault would read the device even when it is there)
        metrics["loss"] = float(loss.detach())
    return LossOutput(loss=loss, metrics=metrics)


class Objective(nn.Module):
    """Base of the ALP objectives: declares the step values ``forward`` reads.

    ``inputs`` maps each ``forward`` argument to the step key it is read from;
    ``optional_inputs`` lists the arguments that may be missing from the step.
    """

    inputs: ClassVar[Mapping[str, str]] = {}
    optional_inputs: ClassVar[frozenset[str]] = frozenset()

    @property
    def rank_weighted(self) -> bool:
        """Whether, under torch.distributed, each rank's loss is weighted by its share of
        the global batch (the mean over ranks is then the global loss): a training loop
        adding up per-rank losses needs to know. False for a plain per-rank mean."""
        return False

    @property
    def requires(self) -> frozenset[str]:
        """The model outputs this objective reads (the engine builds what produces them)."""
        return frozenset(key for key in self.inputs.values() if key in MODEL_OUTPUTS)

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Model inputs derived from the collated batch before the model runs; none here."""
        return {}

    def compute(self, step: Mapping[str, Any]) -> LossOutput:
        """Pick the declared inputs out of ``step`` and run ``forward`` on them."""
        kwargs = {}
        for arg, key in self.inputs.items():
            if key in step and step[key] is not None:
                kwargs[arg] = step[key]
            elif arg not in self.optional_inputs:
                raise KeyError(
                    f"{type(self).__name__} needs {key!r} ({STEP_KEYS.get(key, 'see its docs')})"
                    f" but the step holds only {sorted(step)}")
        return to_loss_output(self(**kwargs), type(self).__name__)


def scalar_parameter(value: float) -> nn.Parameter:
    """A learnable scalar (a temperature, a logit bias), stored with shape ``(1,)``:
    DeepSpeed's engine broadcasts every parameter as a byte view, which a 0-dim tensor
    cannot give ("self.dim() cannot be 0 to view Float as Byte"). Read it with ``[0]``."""
    return nn.Parameter(torch.tensor([float(value)]))


def accept_0dim(state_dict: dict[str, Any], prefix: str, names: tuple[str, ...]) -> None:
    """Let a checkpoint that stored the scalars ``names`` as 0-dim tensors (before they were
    ``(1,)``) load: reshape them in ``state_dict`` (call from ``_load_from_state_dict``)."""
    for name in names:
        value = state_dict.get(prefix + name)
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            state_dict[prefix + name] = value.reshape(1)


class ContrastiveObjective(Objective):
    """An objective with ``forward(audio_embeds, text_embeds, clip_ids=None)``."""

    inputs: ClassVar[Mapping[str, str]] = {
        "audio_embeds": "audio_embeds", "text_embeds": "text_embeds", "clip_ids": "clip_ids"}
    optional_inputs: ClassVar[frozenset[str]] = frozenset({"clip_ids"})


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast off on ``device`` for the block (a no-op where it is not on).

    The contrastive losses compute their logits and loss in float32 under bf16/fp16
    autocast: a (B, B) similarity is cheap, and in bf16 the loss of a 64-pair batch is off
    by ~0.4 % (its logsumexp rounded to 8 bits), more as batches grow.
    """
    kind = device.type
    try:
        active = torch.is_autocast_enabled(kind)
    except (RuntimeError, TypeError, ValueError):  # a device type autocast does not know
        active = False
    if not active:
        yield
        return
    with torch.autocast(kind, enabled=False):
        yield


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 when it is in a half precision (float32/float64 stay)."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


class _PlainObjective(ContrastiveObjective):
    """Adapter for a plain module with ``forward(audio_embeds, text_embeds, clip_ids=None)``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, audio_embeds: torch.Tensor, text_embeds: torch.Tensor,
                clip_ids: torch.Tensor | None = None) -> Any:
        return self.module(audio_embeds, text_embeds, clip_ids)

    def compute(self, step: Mapping[str, Any]) -> LossOutput:
        return to_loss_output(super().compute(step), type(self.module).__name__)


def as_objective(module: nn.Module) -> Objective:
    """``module`` itself when it follows the protocol, else a two-tower contrastive adapter.

    The adapter holds ``module`` as its only child, so its parameters are still trained.
    """
    if isinstance(module, Objective):
        return module
    if all(hasattr(module, name) for name in ("compute", "prepare", "requires")):
        # duck-typed protocol implementation: it has the methods, if not the base class
        return cast(Objective, module)
    if not isinstance(module, nn.Module):
        raise TypeError(f"an objective must be a torch.nn.Module, got {type(module).__name__}")
    return _PlainObjective(module)
