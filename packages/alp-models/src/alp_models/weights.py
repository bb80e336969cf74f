"""Initialising a model part from existing weights (an ALP checkpoint or a safetensors file).

``load_part(model, path, part)`` finds the part's tensors under the prefixes ALP writes
(``model.<part>.`` in a run's checkpoint, ``<part>.`` in a model's state dict, or none in a
file holding only that part), loads the ones whose names and shapes fit, and reports what was
missing, unexpected or of another shape. Files are read with safetensors: nothing is unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from alp_core import ConfigError

__all__ = ["LoadReport", "load_part", "weights_file"]

PARTS = ("model", "audio_encoder", "text_encoder", "caption_decoder")


@dataclass
class LoadReport:
    """What ``load_part`` did: loaded keys, and the ones it could not use."""

    path: str
    part: str
    prefix: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 5) -> str:
        parts = [f"loaded {len(self.loaded)} tensors of {self.part} from {self.path}"
                 + (f" (prefix {self.prefix!r})" if self.prefix else "")]
        if self.missing:
            parts.append(f"missing {len(self.missing)}: {self.missing[:limit]}")
        if self.unexpected:
            parts.append(f"unexpected {len(self.unexpected)}: {self.unexpected[:limit]}")
        for key, want, got in self.mismatched[:limit]:
            parts.append(f"{key}: the model expects shape {list(want)}, the file has {list(got)}")
        return "; ".join(parts)


def weights_file(path: str | Path) -> Path:
    """The safetensors file behind ``path``: a file, a checkpoint folder or a run folder."""
    path = Path(path)
    for candidate in (path, path / "model.safetensors", path / "checkpoint" / "model.safetensors"):
        if candidate.is_file() and candidate.suffix == ".safetensors":
            return candidate
    raise ConfigError(f"model.init_from.path: no safetensors weights at {path} (accepted: a "
                      ".safetensors file, a checkpoint folder or a run folder)")


def load_part(model: nn.Module, path: str | Path, part: str = "audio_encoder",
              strict: bool = True) -> LoadReport:
    """Load ``part`` of ``model`` (``model`` = the whole model) from ``path``."""
    from safetensors.torch import load_file

    if part not in PARTS:
        raise ConfigError(f"model.init_from.part: {part!r}; accepted: {', '.join(PARTS)}")
    target = model if part == "model" else getattr(model, part, None)
    if not isinstance(target, nn.Module):
        raise ConfigError(f"model.init_from.part: the model has no {part} (its objective does "
                          "not need one)")
    file = weights_file(path)
    tensors = load_file(str(file))
    own = target.state_dict()
    prefixes = ["model.", ""] if part == "model" else [f"model.{part}.", f"{part}.", ""]
    best = max(prefixes, key=lambda p: sum(1 for k in own if p + k in tensors))
    report = LoadReport(str(file), part, best)
    found = {k[len(best):]: v for k, v in tensors.items() if k.startswith(best)}
    usable = {}
    for key, want in own.items():
        got = found.get(key)
        if got is None:
            report.missing.append(key)
        elif tuple(got.shape) != tuple(want.shape):
            report.mismatched.append((key, tuple(want.shape), tuple(got.shape)))
        else:
            usable[key] = got
    report.unexpected = sorted(k for k in found if k not in own)
    if not usable:
        raise ConfigError(f"model.init_from: {file} holds no tensor of {part} "
                          f"(tried prefixes {prefixes}); {report.describe()}")
    if strict and not report.clean:
        raise ConfigError(f"model.init_from (strict): {report.describe()}; set "
                          "model.init_from.strict=false to load what fits")
    with torch.no_grad():
        for key, value in usable.items():
            own[key].copy_(value)
    report.loaded = sorted(usable)
    return report
