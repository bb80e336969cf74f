"""Configs of the alp-eval tasks (pydantic only, no torch import, so registration stays cheap)."""

from __future__ import annotations

import inspect
import string
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from alp_core import ComponentConfig


def _non_negative_decays(value: tuple[float, ...]) -> tuple[float, ...]:
    """The ``weight_decays`` check shared by the probe configs."""
    if any(wd < 0 for wd in value):
        raise ValueError(f"weight_decays must be >= 0, got {value}")
    return value


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

    _non_negative = field_validator("weight_decays")(_non_negative_decays)


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

    _non_negative = field_validator("weight_decays")(_non_negative_decays)


class RetrievalConfig(ComponentConfig):
    """Audio-text retrieval in the joint embedding space, both directions, on the test split."""

    ks: tuple[int, ...] = Field(default=(1, 5, 10), min_length=1)
    map_k: int = Field(default=10, ge=1)
    dedupe_captions: bool = Field(
        default=True,
        description="audio->text: identical caption strings form one gallery item, relevant "
        "to every clip that has it (avoids ties between identical texts deciding the "
        "ranking); text->audio always has one query per caption occurrence, only its own "
        "clip relevant",
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


# -- the standard benchmarks, run by `alp eval` on a frozen encoder (alp_eval.protocol) --------

#: name -> (domain, task type, one line for `alp plugins`); the names of alp_eval.datasets.
BENCHMARK_TASKS: dict[str, tuple[str, str, str]] = {
    "esc50": ("sound", "multiclass", "ESC-50, 50 classes, 5-fold CV: linear-probe accuracy"),
    "urbansound8k": ("sound", "multiclass", "UrbanSound8K, 10 classes, 10-fold CV: accuracy"),
    "fsd50k": ("sound", "multilabel", "FSD50K, 200 classes, train/val/eval: mAP"),
    "vggsound": ("sound", "multiclass", "VGGSound, 309 classes, train/test: accuracy"),
    "voxceleb1": ("speech", "multiclass", "VoxCeleb1 speaker identification (1,251): accuracy"),
    "crema-d": ("speech", "multiclass", "CREMA-D speech emotion, speaker folds: accuracy"),
    "speech-commands-v2": ("speech", "multiclass", "Speech Commands v2 keywords: accuracy"),
    "voxlingua107": ("speech", "multiclass", "VoxLingua107 language id (dev set): accuracy"),
    "gtzan": ("music", "multiclass", "GTZAN genres (fault-filtered or 10-fold): accuracy"),
    "nsynth-family": ("music", "multiclass", "NSynth instrument family: accuracy"),
    "nsynth-pitch": ("music", "multiclass", "NSynth pitch: accuracy"),
    "magnatagatune": ("music", "multilabel", "MagnaTagATune top-50 tags: mAP"),
    "desed": ("sound", "sed", "DESED sound event detection: segment- and event-based F1"),
}


class SEDProbeConfig(ComponentConfig):
    """The frame-level SED probe: one sigmoid per class on each encoder frame, then events.

    Frame probabilities above ``threshold`` are median-filtered over ``median_seconds``
    (rounded to an odd number of encoder frames) and each run of active frames is an event;
    scored with DCASE's segment-based (``segment_seconds``) and event-based (``t_collar``,
    ``percentage_of_length``) F1.
    """

    threshold: float = Field(default=0.5, gt=0, lt=1, description="frame probability cut")
    median_seconds: float = Field(default=0.45, ge=0, description="median filter length")
    max_train_frames: int = Field(
        default=100_000, ge=10, description="cap on train (+ val) frames per fit, seeded subset"
    )
    segment_seconds: float = Field(default=1.0, gt=0)
    t_collar: float = Field(default=0.2, gt=0)
    percentage_of_length: float = Field(default=0.2, ge=0, le=1)


class BenchmarkTaskConfig(ComponentConfig):
    """A standard benchmark evaluated on the frozen encoder (``alp eval``; alp_eval.protocol).

    The benchmark is read from ``root`` by its loader in :mod:`alp_eval.datasets` (``loader``
    holds that loader's options, e.g. ``max_missing``, ``top_k``, ``folds``). Each clip is
    decoded at the encoder's rate, its first ``max_seconds`` kept, and embedded once (cached).
    Every protocol round (or those in ``rounds``) fits a linear probe on the mean-pooled frames
    (``linear_probe``: L2 strength chosen on validation only; ``tasks`` and ``min_train`` are
    not used), optionally an attention probe on the frames, or for SED a frame-level probe
    (``sed``); the rounds' metrics are averaged (mean and population std).
    """

    benchmark: ClassVar[str] = ""
    root: str = Field(description="the benchmark's folder, as its loader expects it")
    loader: dict[str, Any] = Field(
        default_factory=dict, description="options of the benchmark's loader (max_missing, ...)"
    )
    max_seconds: float = Field(
        default=30.0, gt=0, description="seconds kept from the start of each clip (paper: 30)"
    )
    rounds: list[int] | None = Field(
        default=None, description="protocol rounds to run (0-based); None = every round"
    )
    linear_probe: LinearProbeConfig = Field(default_factory=LinearProbeConfig)
    attention_probe: bool = Field(default=False, description="also run the attention probe")
    attention: AttentionProbeConfig = Field(default_factory=AttentionProbeConfig)
    sed: SEDProbeConfig = Field(default_factory=SEDProbeConfig)
    seed: int = Field(default=0, description="seeds the probes' validation splits and inits")

    @field_validator("rounds")
    @classmethod
    def _rounds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(r < 0 for r in value)):
            raise ValueError(f"rounds must be a non-empty list of indices >= 0, got {value}")
        return value

    @model_validator(mode="after")
    def _loader_options(self) -> BenchmarkTaskConfig:
        if not self.benchmark:
            return self
        from alp_eval.datasets import BENCHMARKS, load_nsynth

        loader = BENCHMARKS[self.benchmark]
        target = load_nsynth if self.benchmark.startswith("nsynth") else loader
        accepted = [p for p, v in inspect.signature(target).parameters.items()
                    if v.kind is v.KEYWORD_ONLY and p != "task"]
        unknown = sorted(set(self.loader) - set(accepted))
        if unknown:
            raise ValueError(f"loader option(s) {', '.join(unknown)} unknown to the "
                             f"{self.benchmark} loader; accepted: {', '.join(accepted)}")
        return self


def _benchmark_config(name: str) -> type[BenchmarkTaskConfig]:
    """The config class of benchmark ``name`` (carries the name for the task factory)."""
    title = "".join(part.capitalize() for part in name.replace("-", " ").split())
    return type(f"{title}TaskConfig", (BenchmarkTaskConfig,), {
        "__module__": __name__, "__annotations__": {"benchmark": ClassVar[str]},
        "benchmark": name, "__doc__": f"{BENCHMARK_TASKS[name][2]}. "
        + (BenchmarkTaskConfig.__doc__ or "")})


#: name -> its config class (a :class:`BenchmarkTaskConfig` subclass)
BENCHMARK_TASK_CONFIGS: dict[str, type[BenchmarkTaskConfig]] = {
    name: _benchmark_config(name) for name in BENCHMARK_TASKS
}
