"""alp-core: the plugin bus of ALP (hook specs, plugin manager, records, config base)."""

from __future__ import annotations

from alp_core.config import ComponentConfig, EmptyConfig, validate_model
from alp_core.errors import (
    ALPError,
    ConfigError,
    DataError,
    PluginConflictError,
    UnknownComponentError,
)
from alp_core.hookspecs import hookimpl, hookspec
from alp_core.manager import (
    ALPPluginManager,
    get_plugin_manager,
    new_plugin_manager,
    reset_plugin_manager,
)
from alp_core.records import (
    AudioEncoderRecord,
    CaptionDecoderRecord,
    CommandRecord,
    ComponentRecord,
    DataSourceRecord,
    EngineRecord,
    EvalTaskRecord,
    LRScheduleRecord,
    ObjectiveRecord,
    OptimizerRecord,
    TextEncoderRecord,
)
from alp_core.resolve import Resolved, resolve_component
from alp_core.version import __version__

__all__ = [
    "ALPError", "ALPPluginManager", "AudioEncoderRecord", "CaptionDecoderRecord",
    "CommandRecord", "ComponentConfig", "ComponentRecord", "ConfigError", "DataError",
    "DataSourceRecord", "EmptyConfig", "EngineRecord", "EvalTaskRecord", "LRScheduleRecord",
    "ObjectiveRecord", "OptimizerRecord",
    "PluginConflictError", "Resolved", "TextEncoderRecord", "UnknownComponentError", "__version__",
    "get_plugin_manager", "hookimpl", "hookspec", "new_plugin_manager",
    "reset_plugin_manager", "resolve_component", "validate_model",
]
