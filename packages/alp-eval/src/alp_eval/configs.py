"""Configs of the alp-eval tasks (pydantic only, no torch import, so registration stays cheap)."""

from __future__ import annotations

import string

from pydantic import Field, field_validator

from alp_core import ComponentConfig


class LinearProbeConfig(ComponentConfig):
    """A linear probe (multinomial logistic regression) on the mean-pooled frozen encoder output.

    The weight decay is chosen from ``weight_decays`` on a held-out ``val_fraction`` of the
    train embeddings, then the probe is refit on all of them.
    """

    tasks: list[str] | None = Field(
        default=None, description="label keys to probe; None = every key found in the train split"
    )
    max_train: int | None = Field(
        default=None, ge=2, description="cap on train clips per task (seeded random subset)"
    )
    steps: int = Field(default=200, ge=1, description="L-BFGS iterations per fit")
    lr: float = Field(default=1.0, gt=0, description="L-BFGS step size (a line search is used)")
    weight_decays: tuple[float, ...] = Field(
        default=(1e-4, 1e-3, 1e-2, 1e-1), min_length=1, description="L2 penalties to choose from"
    )
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_train: int = Field(default=4, ge=2, description="tasks with fewer train clips are skipped")
    seed: int | None = Field(default=None, description="None = the EvalContext seed")

    @field_validator("weight_decays")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(wd < 0 for wd in value):
            raise ValueError(f"weight_decays must be >= 0, got {value}")
        return value


class AttentionProbeConfig(ComponentConfig):
    """An attention-pooling probe on frozen frame-level features (the study's second protocol).

    ``num_queries`` learned queries attend (``num_heads`` heads) to the valid frames, their
    outputs are averaged and a linear layer classifies. Trained with AdamW, full epochs of
    seeded mini-batches on the fit part of the train split; each (lr, weight decay) of the grid
    keeps its epoch with the best validation score (early stopping) and the grid point with the
    best validation score is the probe (no refit: train only, validation for stopping and
    selection, the test split scored once at the end).
    """

    num_heads: int = Field(default=4, ge=1, description="attention heads (must divide the dim)")
    num_queries: int = Field(default=1, ge=1, description="learned queries, outputs averaged")
    epochs: int = Field(default=50, ge=1, description="maximum epochs per grid point")
    patience: int | None = Field(
        default=10, ge=1, description="stop after this many epochs without a better val score"
    )
    batch_size: int = Field(default=64, ge=1)
    lrs: tuple[float, ...] = Field(
        default=(3e-4, 1e-3, 3e-3), min_length=1, description="AdamW learning rates to try"
    )
    weight_decays: tuple[float, ...] = Field(
        default=(1e-4, 1e-2), min_length=1, description="AdamW weight decays to try"
    )
    val_fraction: float = Field(
        default=0.2, gt=0, lt=1, description="held-out part of train when no val split is given"
    )
    seed: int | None = Field(default=None, description="None = the caller's seed (or 0)")

    @field_validator("lrs")
    @classmethod
    def _positive_lrs(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(lr <= 0 for lr in value):
            raise ValueError(f"lrs must be > 0, got {value}")
        return value

    @field_validator("weight_decays")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(wd < 0 for wd in value):
            raise ValueError(f"weight_decays must be >= 0, got {value}")
        return value


class RetrievalConfig(ComponentConfig):
    """Audio-text retrieval in the joint embedding space, both directions, on the test split."""

    ks: tuple[int, ...] = Field(default=(1, 5, 10), min_length=1)
    map_k: int = Field(default=10, ge=1)
    dedupe_captions: bool = Field(
        default=True,
        description="identical caption strings form one gallery item, relevant to every clip "
        "that has it (avoids ties between identical texts deciding the ranking)",
    )
    text_batch_size: int = Field(default=256, ge=1, description="captions per embed_text call")

    @field_validator("ks")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in value):
            raise ValueError(f"ks must be >= 1, got {value}")
        return value


def check_template(template: str) -> str:
    """``template`` if it is a format string whose only placeholder is ``{label}``.

    Literal braces are written doubled (``{{``, ``}}``). Anything else (``{lable}``, ``{0}``,
    ``{}``, ``{label!r}``, an unmatched brace, no ``{label}`` at all) raises a ``ValueError``
    that quotes the template.
    """
    try:
        fields = [
            (name, conversion, spec)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as err:
        raise ValueError(f"template {template!r} is not a valid format string: {err}") from None
    if any(name != "label" or conversion or spec for name, conversion, spec in fields):
        shown = ", ".join(
            "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            + "}"
            for name, conversion, spec in fields
            if name != "label" or conversion or spec
        )
        raise ValueError(
            f"template {template!r} uses {shown}; the only placeholder is {{label}} "
            "(write literal braces as {{ and }})"
        )
    if not fields:
        raise ValueError(f"template {template!r} has no {{label}} placeholder")
    return template


def _check_templates(templates: tuple[str, ...]) -> tuple[str, ...]:
    for template in templates:
        check_template(template)
    return templates


class ZeroShotConfig(ComponentConfig):
    """Zero-shot classification in the joint space, one task per label key of the test split.

    Each class name (the raw label, or ``label_names[key][raw]``; underscores read as spaces)
    fills every template; the prompt embeddings are L2-normalised, averaged and normalised
    again (CLIP's prompt ensemble), and each test clip takes the class of highest cosine.
    The templates and names used are written into the report, so the numbers can be reproduced.
    """

    templates: tuple[str, ...] = Field(
        default=(
            "{label}",
            "the sound of {label}",
            "a recording of {label}",
            "this is an audio clip of {label}",
        ),
        min_length=1,
        description="prompt templates; each must use {label} and no other placeholder",
    )
    label_templates: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="per label key: templates that replace `templates` for that key",
    )
    label_names: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="per label key: raw label -> readable class name (e.g. spk03: a deep male "
        "voice); unlisted labels are used as-is with underscores as spaces",
    )
    tasks: list[str] | None = Field(
        default=None, description="label keys to classify; None = every key of the test split"
    )
    text_batch_size: int = Field(default=256, ge=1, description="prompts per embed_text call")

    @field_validator("templates")
    @classmethod
    def _valid_templates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _check_templates(value)

    @field_validator("label_templates")
    @classmethod
    def _valid_label_templates(
        cls, value: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        for key, templates in value.items():
            if not templates:
                raise ValueError(f"label_templates.{key}: give at least one template")
            try:
                _check_templates(templates)
            except ValueError as err:
                raise ValueError(f"label_templates.{key}: {err}") from None
        return value

    @field_validator("label_names")
    @classmethod
    def _non_empty_names(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for key, names in value.items():
            empty = sorted(raw for raw, name in names.items() if not name.strip())
            if empty:
                raise ValueError(f"label_names.{key}: empty class name for {empty}")
        return value

    def templates_for(self, key: str) -> tuple[str, ...]:
        """The templates of label key ``key`` (its override, else the shared ones)."""
        return self.label_templates.get(key, self.templates)

    def class_name(self, key: str, raw: str) -> str:
        """The readable name of raw label ``raw`` of ``key``."""
        named = self.label_names.get(key, {}).get(raw)
        return named if named is not None else raw.replace("_", " ")
