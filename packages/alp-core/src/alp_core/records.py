"""Plugin records: what each hook returns to describe one component.

A record is a frozen dataclass holding a name, a pydantic config class and a factory. The
factory may be a callable or a lazy ``"module:attribute"`` path, so registering a component
never imports torch; the heavy module is imported when the component is built.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from pydantic import BaseModel

from alp_core.config import validate_model

Factory = Union[str, Callable[..., Any]]


def resolve_factory(factory: Factory) -> Callable[..., Any]:
    """Resolve a ``"package.module:attr"`` path to the object it names (callables pass)."""
    if callable(factory):
        return factory
    module_name, sep, attr = factory.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"factory path {factory!r} must look like 'package.module:attribute'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def accepted_context(factory: Callable[..., Any], context: dict[str, Any]) -> dict[str, Any]:
    """The part of ``context`` that ``factory`` takes as keyword arguments (all with ``**kw``)."""
    if not context:
        return context
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        return context
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return context
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in context.items() if k in names}


@dataclass(frozen=True)
class ComponentRecord:
    """One registered component: ``factory(config, **context)`` builds it from its config."""

    kind: ClassVar[str] = "component"
    name: str
    config_cls: type[BaseModel]
    factory: Factory
    description: str = ""
    # Filled in by the plugin manager: which plugin / distribution provided the record.
    plugin: str = field(default="", compare=False)
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)

    def validate_config(self, values: dict[str, Any] | BaseModel | None = None) -> BaseModel:
        """Validate ``values`` against this component's config class (``extra="forbid"``).

        A problem is a :class:`~alp_core.errors.ConfigError` naming the key and what is accepted.
        """
        if isinstance(values, self.config_cls):
            return values
        if isinstance(values, BaseModel):
            values = values.model_dump()
        return validate_model(self.config_cls, values or {}, prefix=self.kind)

    def build(self, config: dict[str, Any] | BaseModel | None = None, **context: Any) -> Any:
        """Import the factory lazily and build the component from a validated config.

        ``context`` (e.g. ``memory_dim`` for a decoder, ``special_ids`` for captioning) is
        passed only as far as the factory names it, so a factory takes just what it uses.
        """
        factory = resolve_factory(self.factory)
        return factory(self.validate_config(config), **accepted_context(factory, context))


@dataclass(frozen=True)
class AudioEncoderRecord(ComponentRecord):
    """An audio encoder: features (B, T, F) + lengths -> frames (B, T', D) + lengths."""

    kind: ClassVar[str] = "audio_encoder"


@dataclass(frozen=True)
class TextEncoderRecord(ComponentRecord):
    """A text encoder with its tokenizer: captions -> one embedding per caption."""

    kind: ClassVar[str] = "text_encoder"


@dataclass(frozen=True)
class CaptionDecoderRecord(ComponentRecord):
    """A caption decoder that cross-attends to audio frames."""

    kind: ClassVar[str] = "caption_decoder"


@dataclass(frozen=True)
class ObjectiveRecord(ComponentRecord):
    """A training objective (a ``torch.nn.Module`` returning loss and metrics)."""

    kind: ClassVar[str] = "objective"


@dataclass(frozen=True)
class EvalTaskRecord(ComponentRecord):
    """A downstream evaluation run on the frozen encoder."""

    kind: ClassVar[str] = "eval_task"


@dataclass(frozen=True)
class DataSourceRecord(ComponentRecord):
    """A corpus recipe: ``factory(config).prepare(out_dir)`` writes manifests and returns them."""

    kind: ClassVar[str] = "data_source"


@dataclass(frozen=True)
class EngineRecord(ComponentRecord):
    """A training engine: ``factory(config, train=..., dist=...)`` runs steps on some devices.

    See ``alp_train.engines.base.Engine`` for the interface an engine implements.
    """

    kind: ClassVar[str] = "engine"


@dataclass(frozen=True)
class OptimizerRecord(ComponentRecord):
    """An optimizer: ``factory(config, param_groups=[{"params", "lr_scale", ...}], lr=...)``."""

    kind: ClassVar[str] = "optimizer"


@dataclass(frozen=True)
class LRScheduleRecord(ComponentRecord):
    """A learning-rate schedule: ``factory(config, optimizer=..., total_steps=...,
    steps_per_epoch=...)`` returns a ``torch.optim.lr_scheduler.LRScheduler``."""

    kind: ClassVar[str] = "lr_schedule"


@dataclass(frozen=True)
class CommandRecord:
    """A sub-command of the ``alp`` CLI.

    ``add_arguments(parser)`` declares its arguments on an ``argparse`` sub-parser and
    ``run(args) -> int`` executes it; either may be a lazy ``"module:attr"`` path.
    """

    kind: ClassVar[str] = "command"
    name: str
    help: str
    add_arguments: Factory
    run: Factory
    plugin: str = field(default="", compare=False)
    distribution: str = field(default="", compare=False)
    version: str = field(default="", compare=False)


RECORD_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        AudioEncoderRecord,
        TextEncoderRecord,
        CaptionDecoderRecord,
        ObjectiveRecord,
        EvalTaskRecord,
        DataSourceRecord,
        EngineRecord,
        OptimizerRecord,
        LRScheduleRecord,
        CommandRecord,
    )
}
