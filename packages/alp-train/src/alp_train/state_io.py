"""Nested training state (optimizer, schedule, RNG) as safetensors + JSON, never pickled.

:func:`save_state` stores every tensor of a nested dict/list structure in one safetensors
file and the rest (numbers, strings, the structure) in JSON, each written atomically;
:func:`load_state` puts them back together, exactly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

__all__ = ["atomic_write_text", "load_state", "save_state", "unshare"]

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


def _split(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) for k in value):
            raise TypeError(f"state key types at {key!r} must be str or int")
        # int keys (optimizer state by parameter index) are kept apart from str keys
        return {"__dict__": [[k, _split(v, f"{key}.{k}", tensors)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # numpy arrays and scalars (numpy RNG state)
        return {"__array__": value.tolist(), "dtype": str(getattr(value, "dtype", ""))}
    raise TypeError(f"cannot store {type(value).__name__} at {key!r} in a checkpoint")


def _join(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_join(v, tensors) for v in value]
    if isinstance(value, dict):
        if _TENSOR in value:
            return tensors[value[_TENSOR]]
        if _TUPLE in value:
            return tuple(_join(v, tensors) for v in value[_TUPLE])
        if "__array__" in value:
            import numpy as np

            return np.asarray(value["__array__"], dtype=value["dtype"] or None)
        return {k: _join(v, tensors) for k, v in value["__dict__"]}
    return value


def unshare(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied weights): store such copies apart."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, t in tensors.items():
        ident = (t.untyped_storage().data_ptr(), int(t.storage_offset()))
        out[key] = t.clone() if ident in seen else t
        seen.add(ident)
    return out


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def save_state(state: Any, directory: str | Path, name: str) -> None:
    """Write ``state`` as ``<name>.json`` + ``<name>.safetensors`` under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    structure = _split(state, name, tensors)
    tmp = directory / f"{name}.safetensors.tmp"
    save_file(unshare(tensors), str(tmp))
    os.replace(tmp, directory / f"{name}.safetensors")
    atomic_write_text(directory / f"{name}.json", json.dumps(structure))


def load_state(directory: str | Path, name: str) -> Any:
    """Read back what :func:`save_state` wrote."""
    directory = Path(directory)
    tensors = load_file(str(directory / f"{name}.safetensors"))
    structure = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
    return _join(structure, tensors)
