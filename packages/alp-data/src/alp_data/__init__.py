"""alp-data: manifests, audio decoding, fbank features, datasets, batching and loaders.

Names are imported lazily: plugin discovery imports this package, and must not pay for
torch (see ``alp_data.plugin``).
"""

from __future__ import annotations

import importlib
from typing import Any

from alp_data.version import __version__

_EXPORTS = {
    "ManifestEntry": "manifest", "read_manifest": "manifest", "write_manifest": "manifest",
    "AudioInfo": "audio", "audio_info": "audio", "crop_or_pad": "audio", "load_audio": "audio",
    "Fbank": "features", "FbankConfig": "features", "SpecAugment": "features",
    "SpecAugmentConfig": "features",
    "AudioCaptionDataset": "dataset", "AudioConfig": "transform", "BadClip": "transform",
    "ClipTransform": "transform",
    "Collator": "collate",
    "DurationBucketSampler": "sampler", "EpochSampler": "sampler",
    "BadClipBudget": "loader", "build_loader": "loader", "set_loader_epoch": "loader",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'alp_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"alp_data.{module}"), name)
    globals()[name] = value
    return value
