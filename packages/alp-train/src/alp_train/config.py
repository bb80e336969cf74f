"""The run config of a training run: validated whole, components resolved, before any work.

``alp run`` (alp-cli) loads YAML and overrides into a mapping; :func:`resolve_run` turns it
into a :class:`ResolvedRun`, which :func:`alp_train.recipe.run` executes.

A component is chosen by ``name`` and configured by the other keys of its mapping, e.g.
``audio_encoder: {name: transformer, d_model: 192}``; the keys are checked against the
config class that the plugin registered for that name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alp_core import Resolved, resolve_component, validate_model
from alp_core.manager import ALPPluginManager, get_plugin_manager
from alp_data.dataset import AudioConfig
from alp_data.features import FbankConfig, SpecAugmentConfig
from alp_models.configs import PoolerConfig


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _component(default: str, **options: Any) -> Any:
    return Field(default_factory=lambda: {"name": default, **options})


class DataConfig(StrictModel):
    """Where clips come from and how they are batched."""

    source: dict[str, Any] = _component("demo")
    cache_dir: str = Field("runs/cache", description="prepared corpora are kept here and reused")
    audio: AudioConfig = Field(default_factory=AudioConfig)
    fbank: FbankConfig = Field(default_factory=FbankConfig)
    train_max_seconds: float = Field(3.0, gt=0, description="random crop length in training")
    spec_augment: bool | SpecAugmentConfig = Field(
        True, description="SpecAugment in training: true (defaults), false, or its options "
        "(num_feature_masks, features_mask_size, num_frame_masks, frames_mask_size, "
        "max_frames_mask_fraction, p)")
    batch_size: int = Field(32, ge=1)
    max_batch_seconds: float | None = Field(
        None, gt=0, description="duration-bucketed batches of about this many seconds"
    )
    num_workers: int = Field(1, ge=0)
    features_on: Literal["worker", "device"] = Field(
        "worker", description="where fbank + SpecAugment run: 'worker' (the loader workers, "
        "per clip) or 'device' (workers only decode; the main process computes the whole "
        "batch on train.device, e.g. the GPU, with the same masks and, on the CPU, the same "
        "features)")
    max_bad_clips: int = Field(20, ge=0, description="skip this many unreadable clips, then fail")
    max_bad_rows: int | float = Field(
        0, ge=0, description="manifest rows that fail to parse skipped before failing: a count, "
        "or a fraction in (0, 1) of the rows (0: the first bad row is an error)")


class InitFromConfig(StrictModel):
    """Start a part of the model from existing weights (e.g. an AudioSet-supervised encoder)."""

    path: str = Field(description="a .safetensors file, a checkpoint folder or a run folder")
    part: Literal["audio_encoder", "text_encoder", "caption_decoder", "model"] = "audio_encoder"
    strict: bool = Field(True, description="fail on missing, unexpected or mis-shaped keys")


class ModelConfig(StrictModel):
    """The parts the objective needs are built: the text tower for objectives reading text
    embeddings, the caption decoder for those reading caption logits (CoCa: both)."""

    audio_encoder: dict[str, Any] = _component(
        "transformer", d_model=128, num_layers=3, num_heads=4, ffn_dim=512)
    text_encoder: dict[str, Any] = _component(
        "bert", hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, pooling="mean")
    caption_decoder: dict[str, Any] = _component(
        "transformer", d_model=128, num_layers=2, num_heads=4, ffn_dim=512, max_tokens=64)
    embed_dim: int = Field(128, ge=1, description="joint audio-text space (projection output)")
    projection_hidden: int | None = Field(None, ge=1, description="MLP hidden size")
    pooler: PoolerConfig = Field(default_factory=PoolerConfig,
                                 description="pooling of the projected audio frames")
    init_from: InitFromConfig | None = Field(
        None, description="initialise a part from existing weights before training")


class CheckpointConfig(StrictModel):
    """When training state is saved (model, optimizer, schedule, data position, RNG states)."""

    every_steps: int | None = Field(None, ge=1, description="also save every this many steps")
    every_epochs: int | None = Field(1, ge=1, description="save at the end of every N epochs")
    keep_last: int = Field(2, ge=1, description="keep this many newest checkpoints")


class GradCacheConfig(StrictModel):
    """Contrastive gradient caching: exact large-batch gradients in chunks of ``chunk_size``."""

    chunk_size: int | None = Field(
        None, ge=1, description="embed the batch in chunks of this many clips (None: off)")


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    max_audio_hours: float | None = Field(
        None, gt=0, description="stop once this many hours of audio were trained on (all "
        "ranks); a budget for streamed corpora measured in data rather than epochs")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    text_lr: float | None = Field(None, gt=0, description="learning rate of the text tower")
    grad_clip: float | None = Field(1.0, gt=0)
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="bf16: autocast (CPU or GPU); fp16: autocast + loss scaling (GPU)")
    engine: dict[str, Any] = _component("single")
    optimizer: dict[str, Any] = _component("adamw")
    schedule: dict[str, Any] = _component("warmup-cosine")
    nproc: int = Field(1, ge=1, description="processes to start on this machine")
    compile: bool | Literal["whole", "regional"] = Field(
        False, description="torch.compile the encoders and decoder in place (weights keep "
        "their names); pays off on GPUs. true or whole: each part as one graph; regional: "
        "each repeated block (layer) alone, one graph shared by a stack's layers, so deep "
        "models compile far faster")
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    grad_cache: GradCacheConfig = Field(default_factory=GradCacheConfig)
    validate_every: int | None = Field(
        None, ge=1, description="validation loss on held-out clips every N steps; keeps the best")
    log_every: int = Field(10, ge=1)
    tensorboard: bool = Field(False, description="also write TensorBoard events (extra)")
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    progress: bool = True


class EvalConfig(StrictModel):
    tasks: list[dict[str, Any]] = Field(
        default_factory=lambda: [
            {"name": "linear-probe"}, {"name": "retrieval"}, {"name": "zero-shot"},
            {"name": "captioning"},
        ]
    )
    baseline: bool = Field(True, description="also evaluate the randomly initialised encoder")
    batch_size: int = Field(64, ge=1)

    @field_validator("tasks")
    @classmethod
    def _unique(cls, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = [str(t.get("name")) for t in tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"eval task listed twice: {sorted(dup)}")
        return tasks


class RunConfig(StrictModel):
    name: str = "default"
    seed: int = 0
    output_dir: str | None = Field(
        None, description="run folder; default runs/<name>-<timestamp> (never overwritten)"
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    objective: dict[str, Any] = _component("infonce")
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)


@dataclass(frozen=True)
class ResolvedRun:
    config: RunConfig
    source: Resolved
    audio_encoder: Resolved
    text_encoder: Resolved
    caption_decoder: Resolved
    objective: Resolved
    eval_tasks: tuple[Resolved, ...]
    engine: Resolved
    optimizer: Resolved
    schedule: Resolved

    def dump(self) -> dict[str, Any]:
        """The fully resolved config (every default filled in), as written into the run folder."""
        out = self.config.model_dump(mode="json")
        out["data"]["source"] = self.source.spec()
        out["model"]["audio_encoder"] = self.audio_encoder.spec()
        out["model"]["text_encoder"] = self.text_encoder.spec()
        out["model"]["caption_decoder"] = self.caption_decoder.spec()
        out["objective"] = self.objective.spec()
        out["eval"]["tasks"] = [t.spec() for t in self.eval_tasks]
        out["train"]["engine"] = self.engine.spec()
        out["train"]["optimizer"] = self.optimizer.spec()
        out["train"]["schedule"] = self.schedule.spec()
        return out


COMPONENT_PATHS: tuple[tuple[str, ...], ...] = (
    ("data", "source"), ("model", "audio_encoder"), ("model", "text_encoder"),
    ("model", "caption_decoder"), ("objective",), ("train", "engine"), ("train", "optimizer"),
    ("train", "schedule"))


def default_component_names() -> dict[tuple[str, ...], str]:
    """The component each :data:`COMPONENT_PATHS` mapping picks when it gives no ``name``."""
    names: dict[tuple[str, ...], str] = {}
    defaults = RunConfig().model_dump()
    for path in COMPONENT_PATHS:
        node: Any = defaults
        for key in path:
            node = node[key]
        names[path] = node["name"]
    return names


def with_component_defaults(raw: dict[str, Any]) -> dict[str, Any]:
    """Lay component mappings over the embedded default's, where they pick the same component.

    ``model.text_encoder: {hidden_size: 256}`` (no name, or the default's name) keeps the
    default run's other options; a different name starts from that component's own defaults.
    """
    defaults = RunConfig().model_dump()
    out = copy.deepcopy(raw)
    for path in COMPONENT_PATHS:
        parent: Any = out
        default: Any = defaults
        for key in path[:-1]:
            parent, default = parent.get(key), default[key]
            if not isinstance(parent, dict):
                break
        else:
            spec, default = parent.get(path[-1]), default[path[-1]]
            if isinstance(spec, dict) and spec.get("name", default["name"]) == default["name"]:
                parent[path[-1]] = {**default, **spec}
    return out


def resolve_run(raw: dict[str, Any], pm: ALPPluginManager | None = None) -> ResolvedRun:
    """Validate a raw config mapping completely; any problem is one :class:`ConfigError`."""
    pm = pm or get_plugin_manager()
    if isinstance(raw, dict):
        raw = with_component_defaults(raw)
    config = validate_model(RunConfig, raw)
    assert isinstance(config, RunConfig)
    return ResolvedRun(
        config=config,
        source=resolve_component(pm, "data_source", config.data.source, "data.source"),
        audio_encoder=resolve_component(
            pm, "audio_encoder", config.model.audio_encoder, "model.audio_encoder"),
        text_encoder=resolve_component(
            pm, "text_encoder", config.model.text_encoder, "model.text_encoder"),
        caption_decoder=resolve_component(
            pm, "caption_decoder", config.model.caption_decoder, "model.caption_decoder"),
        objective=resolve_component(pm, "objective", config.objective, "objective"),
        eval_tasks=tuple(
            resolve_component(pm, "eval_task", t, f"eval.tasks.{i}")
            for i, t in enumerate(config.eval.tasks)
        ),
        engine=resolve_component(pm, "engine", config.train.engine, "train.engine"),
        optimizer=resolve_component(pm, "optimizer", config.train.optimizer, "train.optimizer"),
        schedule=resolve_component(pm, "lr_schedule", config.train.schedule, "train.schedule"),
    )
