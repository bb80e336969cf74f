"""Hugging Face transformers audio models (AST, Whisper's encoder) as ALP audio encoders.

Built from a local pretrained folder (offline) or from a config with random weights of the
real architecture. Both models read filterbank-like features in a fixed window, so inputs
are zeroed past each clip and zero-padded (or cropped) to that window; outputs are sliced
back to the clip's frames and padded positions zeroed.

- AST: (B, max_length, num_mel_bins) fbank; patch columns past a clip are masked as
  attention keys (``mask_padding``), which makes a clip's valid frames independent of the
  batch. Output: one frame per time column of patches (mean over its frequency patches).
  Pretrained AST was trained on Kaldi fbank normalised with AudioSet mean/std and attending
  to its padding, so fine-tune or set ``mask_padding: false`` to stay closest to it.
- Whisper: the encoder reads exactly ``2 * max_source_positions`` frames (3000 = 30 s) and
  cannot mask, so valid frames attend to the zero padding; a clip's output is still the
  same alone or batched (the window is fixed). Whisper was trained on its own log10 mel
  (Slaney mel, clamped and scaled to about [-1, 1], silence padded as log-mel of zeros),
  not natural-log Kaldi fbank, so a pretrained Whisper sees shifted inputs unless fine-tuned.
- WavLM, HuBERT: they read waveforms and ALP feeds fbank, so they are refused (ConfigError).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alp_core.errors import ConfigError
from alp_models.audio.protocol import check_inputs
from alp_models.configs import HFAudioEncoderConfig
from alp_models.pooling import length_mask

__all__ = ["HFAudioEncoder", "build_hf_audio_encoder"]

_HF_TYPES = {"ast": "audio-spectrogram-transformer", "whisper": "whisper",
             "wavlm": "wavlm", "hubert": "hubert"}
_WAVEFORM_TYPES = ("wavlm", "hubert")


class HFAudioEncoder(nn.Module):
    """Wraps an ``ASTModel`` or ``WhisperEncoder``: fbank (B, T, F) + lengths → frames."""

    def __init__(self, model: nn.Module, kind: str, freeze: bool = False,
                 mask_padding: bool = True) -> None:
        super().__init__()
        self.model, self.kind, self.freeze = model, kind, freeze
        self.mask_padding = mask_padding
        cfg = model.config
        self.input_dim = cfg.num_mel_bins
        if kind == "ast":
            self.output_dim = cfg.hidden_size
            self.window = cfg.max_length
            self.stride = cfg.time_stride
            self.freq_patches = (cfg.num_mel_bins - cfg.patch_size) // cfg.frequency_stride + 1
            self.max_frames = (cfg.max_length - cfg.patch_size) // cfg.time_stride + 1
        else:
            self.output_dim = cfg.d_model
            self.stride = model.conv1.stride[0] * model.conv2.stride[0]
            self.max_frames = cfg.max_source_positions
            self.window = self.max_frames * self.stride
        self.frame_rate = 100.0 / self.stride
        if freeze:
            self.model.requires_grad_(False)
            self.model.eval()

    def train(self, mode: bool = True) -> HFAudioEncoder:
        """A frozen model stays in eval mode (no dropout) while the rest trains."""
        super().train(mode)
        if self.freeze:
            self.model.eval()
        return self

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames of each clip: ceil(L / stride), capped by the model's fixed window."""
        out = torch.div(lengths + self.stride - 1, self.stride, rounding_mode="floor")
        return out.clamp(max=self.max_frames)

    def forward(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """features (B, T, num_mel_bins), lengths (B,) → frames (B, T', D), lengths (B,)."""
        check_inputs(features, lengths, self.input_dim,
                     f" for this {self.kind} model (num_mel_bins)")
        lengths = lengths.to(features.device)  # lengths may come on the CPU
        b, t, _ = features.shape
        out_lengths = self.output_lengths(lengths)
        frames = int(self.output_lengths(torch.tensor(t)))
        x = features.masked_fill(~length_mask(lengths, t).unsqueeze(-1), 0.0)
        x = F.pad(x[:, : self.window], (0, 0, 0, max(0, self.window - t)))
        valid = length_mask(out_lengths, frames)
        if self.kind == "ast":
            mask = None
            if self.mask_padding:
                cols = length_mask(out_lengths, self.max_frames)  # (B, columns)
                patches = cols[:, None, :].expand(-1, self.freq_patches, -1).reshape(b, -1)
                mask = torch.cat([patches.new_ones(b, 2), patches], dim=1).long()
            hidden = self.model(input_values=x, attention_mask=mask).last_hidden_state[:, 2:]
            hidden = hidden.reshape(b, self.freq_patches, self.max_frames, -1).mean(dim=1)
        else:
            hidden = self.model(input_features=x.transpose(1, 2)).last_hidden_state
        return hidden[:, :frames] * valid.unsqueeze(-1), out_lengths


def _check_overrides(overrides: dict[str, Any], known: dict[str, Any], source: str) -> None:
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(
            f"audio_encoder.config: unknown key(s) {unknown} for {source}; accepted keys "
            f"include {sorted(k for k in known if not k.startswith('_'))[:40]}"
        )


def _refuse_waveform_model(model_type: str) -> None:
    if model_type in _WAVEFORM_TYPES:
        raise ConfigError(
            f"audio_encoder.model_type: {model_type} reads raw waveforms, but ALP feeds "
            "filterbank features to audio encoders; use 'ast' or 'whisper'"
        )


def _from_config(config: HFAudioEncoderConfig) -> tuple[nn.Module, str]:
    """Random weights of the real architecture, ``config.config`` overriding the defaults."""
    from transformers import ASTConfig, ASTModel, WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    kind = config.model_type
    _refuse_waveform_model(kind)
    if kind == "ast":
        _check_overrides(config.config, ASTConfig().to_dict(), "ASTConfig")
        return ASTModel(ASTConfig(**{"num_mel_bins": 80, **config.config})), kind
    _check_overrides(config.config, WhisperConfig().to_dict(), "WhisperConfig")
    return WhisperEncoder(WhisperConfig(**config.config)), kind


def _from_path(config: HFAudioEncoderConfig) -> tuple[nn.Module, str]:
    """A local pretrained folder, loaded with ``local_files_only`` (never the network)."""
    from transformers import AutoConfig, AutoModel

    path = Path(config.path).expanduser()
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"audio_encoder.path: {config.path} is not a local folder holding a transformers "
            "model (config.json and weights, e.g. written by save_pretrained)"
        )
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    kinds = {v: k for k, v in _HF_TYPES.items()}
    kind = kinds.get(hf_config.model_type)
    if kind is None:
        raise ConfigError(
            f"audio_encoder.path: {config.path} holds a {hf_config.model_type!r} model; "
            "supported: audio-spectrogram-transformer (ast), whisper"
        )
    _refuse_waveform_model(kind)
    _check_overrides(config.config, hf_config.to_dict(), str(path))
    # float32 weights whatever the checkpoint holds (transformers would keep an fp16 file's
    # dtype, which the float32 features then meet); autocast gives the half precision
    options = {"dtype": torch.float32, **config.config}
    model = AutoModel.from_pretrained(path, local_files_only=True, **options)
    if kind == "whisper":
        model = model.get_encoder()
    return model, kind


def build_hf_audio_encoder(config: HFAudioEncoderConfig, **_: object) -> HFAudioEncoder:
    """Factory of the ``hf-audio`` audio encoder record."""
    model, kind = _from_path(config) if config.path is not None else _from_config(config)
    return HFAudioEncoder(model, kind, freeze=config.freeze, mask_padding=config.mask_padding)
