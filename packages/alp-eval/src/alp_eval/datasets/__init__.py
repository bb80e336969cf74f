"""Loaders of the standard evaluation benchmarks' on-disk layouts, one uniform description.

``BENCHMARKS`` maps a name to its loader ``load_<name>(root, **options) -> Benchmark``;
:func:`load_benchmark` looks a name up and checks the option names. Each loader's docstring
(and the alp-eval README) says which files it expects where and which split or protocol it
uses. Only the standard library is imported (no torch, no numpy until :func:`event_roll`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from alp_core.errors import ConfigError, UnknownComponentError
from alp_eval.datasets.base import (
    DOMAINS,
    TASK_TYPES,
    Benchmark,
    BenchmarkClip,
    Event,
    ProtocolRound,
    SkippedClip,
)
from alp_eval.datasets.manifests import manifest_rows, to_manifests, write_manifests
from alp_eval.datasets.music import (
    load_gtzan,
    load_magnatagatune,
    load_nsynth,
    load_nsynth_family,
    load_nsynth_pitch,
)
from alp_eval.datasets.sed import event_roll, load_desed
from alp_eval.datasets.sound import load_esc50, load_fsd50k, load_urbansound8k, load_vggsound
from alp_eval.datasets.speech import (
    load_crema_d,
    load_speech_commands,
    load_voxceleb1,
    load_voxlingua107,
)

__all__ = [
    "BENCHMARKS", "DOMAINS", "TASK_TYPES", "Benchmark", "BenchmarkClip", "Event",
    "ProtocolRound", "SkippedClip", "event_roll", "load_benchmark", "load_crema_d",
    "load_desed", "load_esc50", "load_fsd50k", "load_gtzan", "load_magnatagatune",
    "load_nsynth", "load_nsynth_family", "load_nsynth_pitch", "load_speech_commands",
    "load_urbansound8k", "load_vggsound", "load_voxceleb1", "load_voxlingua107",
    "manifest_rows", "to_manifests", "write_manifests",
]

BENCHMARKS: dict[str, Callable[..., Benchmark]] = {
    "esc50": load_esc50,
    "urbansound8k": load_urbansound8k,
    "fsd50k": load_fsd50k,
    "vggsound": load_vggsound,
    "voxceleb1": load_voxceleb1,
    "crema-d": load_crema_d,
    "speech-commands-v2": load_speech_commands,
    "voxlingua107": load_voxlingua107,
    "gtzan": load_gtzan,
    "nsynth-family": load_nsynth_family,
    "nsynth-pitch": load_nsynth_pitch,
    "magnatagatune": load_magnatagatune,
    "desed": load_desed,
}


def _options(loader: Callable[..., Benchmark]) -> list[str]:
    target = load_nsynth if loader in (load_nsynth_family, load_nsynth_pitch) else loader
    params = inspect.signature(target).parameters
    return [p for p, v in params.items() if v.kind is v.KEYWORD_ONLY and p != "task"]


def load_benchmark(name: str, root: str | os.PathLike, **options: Any) -> Benchmark:
    """Load benchmark ``name`` from ``root``; an unknown name or option lists the valid ones."""
    if name not in BENCHMARKS:
        raise UnknownComponentError("benchmark", name, list(BENCHMARKS))
    loader = BENCHMARKS[name]
    accepted = _options(loader)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(f"benchmark {name!r}: unknown option(s) {', '.join(unknown)}; "
                          f"accepted: {', '.join(accepted)}")
    return loader(root, **options)
