"""alp-data: manifests, audio decoding, fbank features, datasets, batching and loaders.

Names are imported lazily: plugin discovery imports this package, and must not pay for
torch (see ``alp_data.plugin``).
"""

from __future__ import annotations

import importlib
from typing import Any

from alp_data.version import __version__

# name -> the module under alp_data that defines it. ``mix`` (the function) is not here: a
# package attribute of that name is the submodule ``alp_data.mix`` once it is imported, so
# ``from alp_data import mix`` must keep meaning the module; call ``alp_data.mix.mix``.
_EXPORTS = {
    "BadRow": "manifest", "Caption": "manifest", "ManifestEntry": "manifest",
    "read_manifest": "manifest", "write_manifest": "manifest",
    "BAD_CLIP_REASONS": "audio", "AudioError": "audio", "AudioInfo": "audio",
    "audio_info": "audio", "crop_or_pad": "audio", "load_audio": "audio",
    "load_audio_bytes": "audio", "resampler": "audio",
    "scrub_url": "scrub",
    "Fbank": "features", "FbankConfig": "features", "SpecAugment": "features",
    "SpecAugmentConfig": "features",
    "FeaturesOnDevice": "deferred", "batch_features": "deferred",
    "AudioCaptionDataset": "dataset", "AudioConfig": "transform", "BadClip": "transform",
    "ClipTransform": "transform",
    "Collator": "collate",
    "DurationBucketSampler": "sampler", "EpochSampler": "sampler", "EvenBatchSampler": "sampler",
    "SKIPPED_CLIPS_FILE": "loader", "BadClipBudget": "loader", "build_loader": "loader",
    "set_loader_epoch": "loader", "write_skipped_jsonl": "loader",
    "map_tasks": "parallel",
    "MixConfig": "mix", "MixResult": "mix", "MixSource": "mix",
    "ShardIndex": "shards.index", "open_shards": "shards.index",
    "PlanConfig": "shards.plan", "build_stream_loader": "shards.stream",
    "write_shards": "shards.writer",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'alp_data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"alp_data.{module}"), name)
    globals()[name] = value
    return value
