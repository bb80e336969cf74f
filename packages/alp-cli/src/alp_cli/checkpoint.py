"""Checkpoints as safetensors (weights) plus JSON (config and state); never pickled."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

WEIGHTS = "model.safetensors"
META = "checkpoint.json"


def save_checkpoint(
    directory: str | Path, modules: dict[str, nn.Module], config: dict[str, Any],
    state: dict[str, Any],
) -> Path:
    """Write ``<prefix>.<param>`` tensors of every module and a JSON file, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for prefix, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"{prefix}.{key}"] = value.detach().cpu().contiguous()
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(_unshare(tensors), str(tmp), metadata={"format": "pt"})
    os.replace(tmp, directory / WEIGHTS)
    meta_tmp = directory / (META + ".tmp")
    meta_tmp.write_text(json.dumps({"config": config, "state": state}, indent=2))
    os.replace(meta_tmp, directory / META)
    return directory


def _unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied weights): store such copies apart."""
    seen: dict[tuple[int, int], str] = {}
    out = {}
    for key, t in tensors.items():
        ident = (t.untyped_storage().data_ptr(), t.storage_offset())
        out[key] = t.clone() if ident in seen else t
        seen.setdefault(ident, key)
    return out


def load_checkpoint(
    directory: str | Path, modules: dict[str, nn.Module] | None = None, strict: bool = True
) -> dict[str, Any]:
    """Load weights into ``modules`` (same prefixes as saved) and return the JSON metadata."""
    directory = Path(directory)
    meta = json.loads((directory / META).read_text())
    if modules:
        tensors = load_file(str(directory / WEIGHTS))
        for prefix, module in modules.items():
            part = {k[len(prefix) + 1:]: v for k, v in tensors.items()
                    if k.startswith(prefix + ".")}
            module.load_state_dict(part, strict=strict)
    return meta
