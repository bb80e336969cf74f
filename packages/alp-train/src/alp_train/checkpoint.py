"""Checkpoints that resume a run exactly, and the final model that evaluation reads.

A training checkpoint is a folder ``checkpoints/step-00000120/`` holding

- ``model.safetensors``: every weight of the task (model + objective), gathered on rank 0;
- the engine's state: ``engine.{json,safetensors}`` (optimizer, schedule, loss scaler) for the
  torch engines, DeepSpeed's own sharded folder ``deepspeed/`` for ZeRO;
- ``progress.json``: step, epoch, batches consumed in the epoch, counters, rank 0's skipped
  clips; ``skipped_clips.json``: every rank's skipped clips (each rank resumes with its own);
- ``rng.{json,safetensors}``: every rank's torch (CPU and CUDA), numpy and Python RNG states.

It is written under a temporary name and renamed into place, then ``checkpoints/latest`` is
replaced; only the newest ``keep_last`` folders are kept. Nothing is pickled, except inside
DeepSpeed's own shards (its format).
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from alp_train.distributed import DistInfo, broadcast_object, gather_objects
from alp_train.engines.base import Engine
from alp_train.state_io import atomic_write_text, load_state, save_state, unshare

__all__ = ["Checkpointer", "Progress", "latest_checkpoint", "load_weights", "save_model"]

WEIGHTS = "model.safetensors"
META = "checkpoint.json"
SKIPPED = "skipped_clips.json"  # in a checkpoint: every rank's skipped clips so far


@dataclass
class Progress:
    """Where training stands; what a checkpoint needs besides weights and optimizer."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0
    micro_steps: int = 0
    samples: int = 0
    audio_seconds: float = 0.0
    skipped_batches: int = 0
    skipped_clips: list[dict[str, str]] = field(default_factory=list)
    best_val_loss: float | None = None


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(_tuples(state["python"]))
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value: Any) -> Any:
    """random.setstate wants the nested tuples it gave (JSON has lists)."""
    if isinstance(value, (list, tuple)):
        return tuple(_tuples(v) for v in value)
    return value


def save_model(directory: str | Path, state: dict[str, torch.Tensor],
               meta: dict[str, Any] | None = None) -> Path:
    """Write ``state`` as ``model.safetensors`` (+ ``checkpoint.json``) atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (WEIGHTS + ".tmp")
    save_file(unshare({k: v.contiguous() for k, v in state.items()}), str(tmp),
              metadata={"format": "pt"})
    tmp.replace(directory / WEIGHTS)
    if meta is not None:
        atomic_write_text(directory / META, json.dumps(meta, indent=2))
    return directory


def load_weights(directory: str | Path, modules: dict[str, nn.Module] | None = None,
                 strict: bool = True) -> dict[str, Any]:
    """Load ``<prefix>.<param>`` tensors into ``modules``; return the JSON metadata (or {})."""
    directory = Path(directory)
    meta_path = directory / META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if modules:
        tensors = load_file(str(directory / WEIGHTS))
        for prefix, module in modules.items():
            part = {k[len(prefix) + 1:]: v for k, v in tensors.items()
                    if k.startswith(prefix + ".")}
            module.load_state_dict(part, strict=strict)
    return meta


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run folder, or None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if pointer.is_file():
        path = root / pointer.read_text().strip()
        if (path / "progress.json").is_file():
            return path
    done = sorted(p for p in root.glob("step-*") if (p / "progress.json").is_file()
                  and not p.name.endswith(".tmp"))
    return done[-1] if done else None


class Checkpointer:
    """Saves and restores training checkpoints of one run folder (collective calls)."""

    def __init__(self, run_dir: Path, engine: Engine, dist: DistInfo, keep_last: int = 2,
                 gather_weights: bool = True) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.engine, self.dist, self.keep_last = engine, dist, keep_last
        self.gather_weights = gather_weights

    def latest(self) -> Path | None:
        """The newest complete checkpoint folder, or None."""
        return latest_checkpoint(self.root.parent)

    def save(self, progress: Progress) -> Path:
        """Write a checkpoint of the current state (every rank calls this)."""
        name = f"step-{progress.step:08d}"
        final, tmp = self.root / name, self.root / (name + ".tmp")
        if self.dist.is_main:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.engine.barrier()
        self.engine.save_state(tmp)
        state = self.engine.full_state_dict() if self.gather_weights else None
        rngs = gather_objects(rng_state(), self.dist)
        skipped = gather_objects(progress.skipped_clips, self.dist)  # each rank's own list
        if self.dist.is_main:
            if state is not None:
                save_model(tmp, state)
            save_state({"ranks": rngs}, tmp, "rng")
            atomic_write_text(tmp / SKIPPED, json.dumps({"ranks": skipped}))
            atomic_write_text(tmp / "progress.json", json.dumps(asdict(progress), indent=2))
            # the same step saved again (a periodic save at an epoch's end, a preemption right
            # after a save): the complete folder is renamed aside, never deleted in place, so a
            # kill at any point leaves a complete checkpoint that latest_checkpoint finds
            replaced = self.root / (name + ".replaced")
            shutil.rmtree(replaced, ignore_errors=True)
            if final.exists():
                final.replace(replaced)
            tmp.replace(final)
            atomic_write_text(self.root / "latest", name)
            for pattern in ("step-*.replaced", "step-*.tmp"):  # this save's, a killed one's
                for stale in self.root.glob(pattern):
                    shutil.rmtree(stale, ignore_errors=True)
            self._prune()
        self.engine.barrier()
        return final

    def save_best(self, progress: Progress) -> Path:
        """Keep the weights of the best validation step in ``best/`` (every rank calls this)."""
        best = self.root.parent / "best"
        state = self.engine.full_state_dict()
        if self.dist.is_main and state is not None:
            save_model(best, state, {"state": asdict(progress)})
        self.engine.barrier()
        return best

    def _prune(self) -> None:
        done = sorted(p for p in self.root.glob("step-*")
                      if not p.name.endswith((".tmp", ".replaced")))
        for old in done[:-self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def load(self, path: Path) -> Progress:
        """Restore engine state, weights and this rank's RNG; return the saved progress.

        A file of the checkpoint that cannot be read (cut short, damaged) is an error naming
        the checkpoint and the file's complaint."""
        path = Path(broadcast_object(str(path), self.dist))
        try:
            return self._load(path)
        except RuntimeError:
            raise
        except Exception as err:  # safetensors' and json's own errors name no file
            raise RuntimeError(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                               f"{err}); a damaged copy or a full disk? resume from another "
                               "checkpoint by removing this folder") from err

    def _load(self, path: Path) -> Progress:
        self.engine.load_state(path)
        if (not self.engine.owns_weights and (path / WEIGHTS).is_file()
                and self.engine.task is not None):
            tensors = load_file(str(path / WEIGHTS), device=str(self.engine.device))
            with torch.no_grad():
                missing, unexpected = self.engine.task.load_state_dict(tensors, strict=False)
            if missing or unexpected:
                raise RuntimeError(f"{path / WEIGHTS} does not fit the model: missing "
                                   f"{missing[:5]}, unexpected {unexpected[:5]}")
        rngs = load_state(path, "rng")["ranks"]
        if len(rngs) != self.dist.world_size:
            raise RuntimeError(f"{path} was written by {len(rngs)} processes; resume it with "
                               f"train.nproc={len(rngs)} (this run has {self.dist.world_size})")
        set_rng_state(rngs[self.dist.rank])
        progress = Progress(**json.loads((path / "progress.json").read_text()))
        if (path / SKIPPED).is_file():  # progress.json holds rank 0's; every rank its own
            progress.skipped_clips = json.loads((path / SKIPPED).read_text())["ranks"][
                self.dist.rank]
        return progress
