"""Hybrid objectives: a weighted sum of objectives, and the CoCa-style contrastive + captioning.

:class:`WeightedSumLoss` drives each term through the step protocol of
:mod:`alp_objectives.base`: it merges the terms' ``prepare`` outputs, asks the model for the
union of what they ``require``, and returns ``sum_i w_i * loss_i`` with every term's metrics
under ``<label>/``. CoCa is that sum of a contrastive loss on the pooled embeddings and
captioning on the encoder frames (two towers plus a caption decoder sharing one audio encoder).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, cast

import torch
from torch import nn

from alp_core import ConfigError, resolve_component
from alp_core.manager import ALPPluginManager
from alp_objectives.base import Objective, as_objective
from alp_objectives.captioning import CaptioningLoss
from alp_objectives.configs import CaptioningConfig, CoCaConfig, WeightedSumConfig
from alp_objectives.outputs import LossOutput

SPECIAL_ID_KEYS = ("pad_id", "eos_id", "mask_id", "bos_id", "vocab_size")


class WeightedSumLoss(Objective):
    """``sum_i weight_i * term_i`` over objectives that follow the step protocol.

    ``terms`` maps a label (the metric prefix) to ``(objective, weight)``; plain modules with
    ``forward(audio_embeds, text_embeds, clip_ids)`` are accepted as contrastive terms. Call
    :meth:`compute` with the step (or the module itself, which does the same).
    """

    @property
    def rank_weighted(self) -> bool:
        return all(term.rank_weighted for _, term in self._objectives())

    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        if not terms:
            raise ValueError("WeightedSumLoss needs at least one term")
        for label, (_, weight) in terms.items():
            if not isinstance(label, str) or not label or "." in label or "/" in label:
                raise ValueError(f"term label {label!r} must be a non-empty name without . or /")
            if not float(weight) >= 0.0:
                raise ValueError(f"term {label!r}: weight must be >= 0, got {weight!r}")
        self.terms = nn.ModuleDict({label: as_objective(m) for label, (m, _) in terms.items()})
        self.weights = {label: float(w) for label, (_, w) in terms.items()}

    def _objectives(self) -> Iterator[tuple[str, Objective]]:
        """(label, objective) of every term; ``nn.ModuleDict`` types its values as plain
        modules, but ``__init__`` stored each through :func:`as_objective`."""
        for label, term in self.terms.items():
            yield label, cast(Objective, term)

    @property
    def requires(self) -> frozenset[str]:
        return frozenset().union(*(term.requires for _, term in self._objectives()))

    def prepare(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Every term's model inputs; two terms may not prepare the same key."""
        out: dict[str, Any] = {}
        owner: dict[str, str] = {}
        for label, term in self._objectives():
            for key, value in term.prepare(batch).items():
                if key in out:
                    raise ValueError(
                        f"terms {owner[key]!r} and {label!r} both prepare {key!r}; a weighted "
                        "sum can hold one objective of each kind that prepares model inputs")
                out[key], owner[key] = value, label
        return out

    def compute(self, step: Mapping[str, Any]) -> LossOutput:
        total: torch.Tensor | None = None
        metrics: dict[str, float] = {}
        logged: float | None = 0.0
        for label, term in self._objectives():
            out = term.compute(step)
            weighted = self.weights[label] * out.loss
            total = weighted if total is None else total + weighted
            metrics.update({f"{label}/{k}": float(v) for k, v in out.metrics.items()})
            term_loss = out.metrics.get("loss")
            logged = (None if logged is None or term_loss is None
                      else logged + self.weights[label] * float(term_loss))
        assert total is not None
        # the terms' logged losses already came to the host: no device read for the sum
        metrics["loss"] = float(total.detach()) if logged is None else logged
        return LossOutput(loss=total, metrics=metrics)

    def forward(self, step: Mapping[str, Any]) -> LossOutput:
        return self.compute(step)


def captioning_loss(
    config: CaptioningConfig, special_ids: Mapping[str, int] | None
) -> CaptioningLoss:
    """A :class:`CaptioningLoss` with the caption tokenizer's ids (``special_ids``)."""
    if not special_ids or not {"pad_id", "eos_id"} <= set(special_ids):
        raise ConfigError(
            "objective captioning needs the caption tokenizer's ids: build it with "
            "special_ids={pad_id, eos_id, mask_id, bos_id, vocab_size} (alp run passes the "
            f"caption decoder's); got {dict(special_ids or {})}")
    return CaptioningLoss(config, **{k: special_ids[k] for k in SPECIAL_ID_KEYS
                                     if special_ids.get(k) is not None})


def build_weighted_sum(
    config: WeightedSumConfig, plugin_manager: ALPPluginManager | None = None, **context: Any
) -> WeightedSumLoss:
    """Build every term by name through the plugin manager, passing ``context`` on."""
    terms = {}
    for i, term in enumerate(config.terms):
        resolved = resolve_component(plugin_manager, "objective", term.spec(), f"terms.{i}")
        terms[term.key] = (resolved.build(plugin_manager=plugin_manager, **context), term.weight)
    return WeightedSumLoss(terms)


def build_coca(
    config: CoCaConfig, plugin_manager: ALPPluginManager | None = None,
    special_ids: Mapping[str, int] | None = None, **context: Any,
) -> WeightedSumLoss:
    """Contrastive (by name) + captioning, weighted as ``config`` says."""
    resolved = resolve_component(plugin_manager, "objective", config.contrastive, "contrastive")
    contrastive = resolved.build(plugin_manager=plugin_manager, special_ids=special_ids,
                                 **context)
    if "caption_logits" in as_objective(contrastive).requires:
        raise ConfigError(f"objective.contrastive: {resolved.record.name!r} is not a contrastive "
                          "objective (it reads caption logits); use e.g. infonce or siglip")
    label = resolved.record.name if resolved.record.name != "captioning" else "contrastive"
    return WeightedSumLoss({
        label: (contrastive, config.contrastive_weight),
        "captioning": (captioning_loss(config.captioning, special_ids), config.captioning_weight),
    })
