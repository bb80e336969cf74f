"""The HEAR 2021 common API over a trained ALP model (``save_pretrained`` folder).

``load_model(path)`` returns a ``torch.nn.Module`` with ``sample_rate``,
``scene_embedding_size`` and ``timestamp_embedding_size``; ``get_scene_embeddings`` and
``get_timestamp_embeddings`` take audio ``(n_sounds, n_samples)`` at that rate. Timestamp
embeddings are the frozen encoder frames (``PretrainedALP.frames``); frame ``i`` is stamped at
the centre of the ``i``-th hop-long span of the audio, ``(i + 0.5) * hop`` milliseconds, with
``hop`` the encoder's frame hop (its ``frame_rate`` scaled to the fbank hop: 40 ms for a
4x-subsampling encoder on 10 ms fbank), so stamps are evenly spaced and as many as the frames.
Scene embeddings are :meth:`PretrainedALP.embed_audio` (``encoder`` space by default: the
mean-pooled frames linear probes read; ``space="joint"`` gives the audio-text space).

:func:`export_hear_module` writes a package exposing the three functions bound to one
folder, for ``hear-eval-kit``'s ``--module NAME --model PATH``.
"""

from __future__ import annotations

import keyword
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alp_core import ConfigError
from alp_eval.pretrained import CONFIG_FILE, WEIGHTS_FILE, PretrainedALP

__all__ = ["HEAR_SAMPLE_RATES", "HearModel", "export_hear_module", "get_scene_embeddings",
           "get_timestamp_embeddings", "load_model"]

#: the input rates the HEAR 2021 API accepts
HEAR_SAMPLE_RATES = (16000, 22050, 44100, 48000)


class HearModel(nn.Module):
    """The HEAR model object: the ALP model as a submodule (so ``.to(device)`` moves it) and
    the three size attributes the API asks for, as plain ints."""

    def __init__(self, pretrained: PretrainedALP, *, space: str = "encoder",
                 window_seconds: float = 10.0, batch_size: int = 16) -> None:
        super().__init__()
        if pretrained.sample_rate not in HEAR_SAMPLE_RATES:
            raise ConfigError(f"HEAR accepts sample rates {HEAR_SAMPLE_RATES}; this model "
                              f"reads {pretrained.sample_rate} Hz")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.model = pretrained.model
        self.pretrained = pretrained
        self.space = space
        self.window_seconds = float(window_seconds)
        self.batch_size = int(batch_size)
        self.sample_rate: int = int(pretrained.sample_rate)
        self.scene_embedding_size: int = int(pretrained.embedding_dim(space))  # type: ignore
        self.timestamp_embedding_size: int = int(pretrained.encoder_dim)

    def forward(self, audio: Tensor) -> Tensor:
        return get_scene_embeddings(audio, self)


def load_model(model_file_path: str = "", **kwargs: Any) -> HearModel:
    """A :class:`HearModel` from a ``save_pretrained`` folder (any layout
    :meth:`PretrainedALP.from_pretrained` reads). ``kwargs``: ``device`` (default cpu),
    ``space`` (``encoder``/``joint``), ``window_seconds``, ``batch_size``."""
    if not model_file_path:
        raise ConfigError("load_model needs model_file_path: a folder written by "
                          "PretrainedALP.save_pretrained (or alp export --pretrained)")
    device = kwargs.pop("device", "cpu")
    unknown = sorted(set(kwargs) - {"space", "window_seconds", "batch_size"})
    if unknown:
        raise ConfigError(f"load_model: unknown options {unknown}; accepted: device, space, "
                          "window_seconds, batch_size")
    return HearModel(PretrainedALP.from_pretrained(model_file_path, device=device), **kwargs)


def _check_audio(audio: Tensor, model: Any) -> None:
    if not isinstance(model, HearModel):
        raise TypeError(f"model must come from alp_eval.hear.load_model, got "
                        f"{type(model).__name__}")
    if not isinstance(audio, Tensor) or audio.dim() != 2:
        raise ValueError("audio must be a torch tensor (n_sounds, n_samples), got "
                         f"{getattr(audio, 'shape', type(audio).__name__)}")


def get_scene_embeddings(audio: Tensor, model: HearModel) -> Tensor:
    """One embedding per sound, ``(n_sounds, model.scene_embedding_size)`` float32 on
    ``audio``'s device: :meth:`PretrainedALP.embed_audio` of each row."""
    _check_audio(audio, model)
    if audio.shape[0] == 0:
        return torch.zeros(0, model.scene_embedding_size, device=audio.device)
    rows = list(audio.detach().to("cpu", torch.float32))
    out = model.pretrained.embed_audio(rows, batch_size=model.batch_size, space=model.space,
                                       window_seconds=model.window_seconds)
    return out.to(audio.device)


def get_timestamp_embeddings(audio: Tensor, model: HearModel) -> tuple[Tensor, Tensor]:
    """Encoder frames ``(n_sounds, n_frames, model.timestamp_embedding_size)`` and their
    centre times ``(n_sounds, n_frames)`` in milliseconds, float32 on ``audio``'s device.

    Each whole sound goes through the encoder in one pass (``model.batch_size`` sounds at a
    time; HEAR's rows share one length, so no frame is padded).
    """
    _check_audio(audio, model)
    rows = list(audio.detach().to("cpu", torch.float32))
    chunks = []
    hop = model.pretrained.frame_seconds
    for start in range(0, len(rows), model.batch_size):
        frames, lengths, hop = model.pretrained.frames(rows[start:start + model.batch_size])
        if int(lengths.min()) != int(lengths.max()):  # rows of one tensor: never happens
            raise RuntimeError(f"frame counts differ within a batch: {lengths.tolist()}")
        chunks.append(frames)
    if chunks:
        embeddings = torch.cat(chunks)
    else:
        embeddings = torch.zeros(0, 0, model.timestamp_embedding_size)
    n_frames = embeddings.shape[1]
    stamps = (torch.arange(n_frames, dtype=torch.float64) + 0.5) * (hop * 1000.0)
    timestamps = stamps.to(torch.float32).expand(len(rows), n_frames).contiguous()
    return embeddings.to(audio.device), timestamps.to(audio.device)


_TEMPLATE = '''"""HEAR 2021 API of the ALP model in {folder}.

Written by alp_eval.hear.export_hear_module. With hear-eval-kit (this folder's parent on
PYTHONPATH): python -m heareval.embeddings.runner {module} --model {model_arg}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alp_eval.hear import get_scene_embeddings, get_timestamp_embeddings
from alp_eval.hear import load_model as _load_model

__all__ = ["MODEL_PATH", "get_scene_embeddings", "get_timestamp_embeddings", "load_model"]

MODEL_PATH = {path_expr}


def load_model(model_file_path: str = "", **kwargs: Any):
    """The model of ``model_file_path`` (default: {default_doc})."""
    return _load_model(model_file_path or str(MODEL_PATH), **kwargs)
'''


def export_hear_module(pretrained_folder: str | os.PathLike, out_dir: str | os.PathLike,
                       module_name: str, *, bundle: bool = False) -> Path:
    """Write ``out_dir/module_name/__init__.py``: a module exposing ``load_model``,
    ``get_scene_embeddings`` and ``get_timestamp_embeddings`` bound to ``pretrained_folder``
    (``load_model()`` without a path loads it). ``bundle`` copies the folder into the package
    (``module_name/model/``) so the package can move. Returns the package folder; put
    ``out_dir`` on ``PYTHONPATH`` and run hear-eval-kit with ``--module module_name``."""
    folder = Path(pretrained_folder).resolve()
    if not ((folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()):
        raise ConfigError(f"{folder}: expected a save_pretrained folder ({CONFIG_FILE} + "
                          f"{WEIGHTS_FILE}); write one with PretrainedALP.save_pretrained or "
                          "alp export RUN --pretrained FOLDER")
    if not module_name.isidentifier() or keyword.iskeyword(module_name):
        raise ConfigError(f"module_name {module_name!r} is not a Python identifier")
    package = Path(out_dir) / module_name
    package.mkdir(parents=True, exist_ok=True)
    if bundle:
        target = package / "model"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(folder, target)
        path_expr, default_doc = 'Path(__file__).parent / "model"', "the bundled model/"
        model_arg = "<package>/model"
    else:
        path_expr, default_doc, model_arg = f"Path({str(folder)!r})", str(folder), str(folder)
    text = _TEMPLATE.format(folder=folder, module=module_name, model_arg=model_arg,
                            path_expr=path_expr, default_doc=default_doc)
    tmp = package / "__init__.py.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, package / "__init__.py")
    return package
