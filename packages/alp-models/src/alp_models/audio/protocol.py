"""The contract of an ALP audio encoder, in code: what every encoder (built-in or plugin) has.

``forward(features (B, T, F), lengths (B,)) -> (frames (B, T', D), lengths (B,))`` with
``output_dim`` = D; optionally ``input_dim`` = F (checked against the filterbank bins when
the model is assembled), ``frame_rate`` (output frames per second at a 10 ms hop) and
``output_lengths(lengths)``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor

from alp_core import ConfigError

__all__ = ["AudioEncoder", "check_audio_encoder", "check_inputs"]


@runtime_checkable
class AudioEncoder(Protocol):
    """Filterbank frames and their lengths in, encoder frames and their lengths out."""

    output_dim: int

    def __call__(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]: ...


def check_audio_encoder(encoder: Any, name: str, input_dim: int | None = None) -> None:
    """Raise :class:`ConfigError` when ``encoder`` does not keep the contract (or expects
    ``input_dim`` other than the filterbank's)."""
    missing = [attr for attr in ("output_dim", "forward") if not hasattr(encoder, attr)]
    if missing or not isinstance(encoder, AudioEncoder):
        raise ConfigError(f"model.audio_encoder {name!r} lacks {missing or ['__call__']}; an "
                          "audio encoder is an nn.Module with output_dim and "
                          "forward(features, lengths) -> (frames, lengths)")
    own = getattr(encoder, "input_dim", None)
    if input_dim is not None and own is not None and int(own) != int(input_dim):
        raise ConfigError(f"model.audio_encoder {name!r} expects {own} feature bins per frame "
                          f"but data.fbank.num_mel_bins gives {input_dim}; set them equal")


def check_inputs(features: Tensor, lengths: Tensor, input_dim: int, what: str = "") -> None:
    """The forward's input contract: ``features`` (B, T, input_dim) and ``lengths`` (B,)."""
    if features.dim() != 3 or features.shape[-1] != input_dim:
        raise ValueError(f"features must be (B, T, {input_dim}){what}, got "
                         f"{tuple(features.shape)}")
    if lengths.shape != features.shape[:1]:
        raise ValueError(f"lengths must be ({features.shape[0]},), got {tuple(lengths.shape)}")
