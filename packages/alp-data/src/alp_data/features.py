"""Log-mel filterbank features (Kaldi-compatible) and SpecAugment masking.

The paper's encoder consumes 80-bin Kaldi fbank at a 10 ms hop; computing it with
``torchaudio.compliance.kaldi.fbank`` keeps features identical to icefall/lhotse recipes.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torchaudio.compliance import kaldi

from alp_core.config import ComponentConfig

__all__ = ["Fbank", "FbankConfig", "SpecAugment", "SpecAugmentConfig"]


class FbankConfig(ComponentConfig):
    """Kaldi fbank options (the paper: 80 bins, 25 ms window, 10 ms hop, no dither)."""

    num_mel_bins: int = Field(80, gt=0)
    frame_length_ms: float = Field(25.0, gt=0)
    frame_shift_ms: float = Field(10.0, gt=0)
    dither: float = Field(0.0, ge=0)
    sample_rate: int = Field(16000, gt=0)


class Fbank:
    """Callable: float32 wave ``(num_samples,)`` in [-1, 1] -> log-mel ``(num_frames, bins)``.

    The wave is scaled by 32768 like Kaldi's int16 input; frames are snipped at the edges, so
    a wave shorter than one window yields zero frames.
    """

    def __init__(self, config: FbankConfig | None = None) -> None:
        self.config = config or FbankConfig()
        self.window_samples = int(self.config.sample_rate * self.config.frame_length_ms / 1000)
        self.shift_samples = int(self.config.sample_rate * self.config.frame_shift_ms / 1000)

    @property
    def num_mel_bins(self) -> int:
        return self.config.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from ``num_samples`` samples: ``1 + (n - window) // shift``."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        if wave.dim() != 1:
            raise ValueError(f"Fbank expects a mono wave (num_samples,), got {tuple(wave.shape)}")
        if self.num_frames(wave.shape[0]) == 0:
            return wave.new_zeros(0, self.config.num_mel_bins, dtype=torch.float32)
        cfg = self.config
        feats = kaldi.fbank(
            wave.to(torch.float32).unsqueeze(0) * 32768.0,
            num_mel_bins=cfg.num_mel_bins,
            frame_length=cfg.frame_length_ms,
            frame_shift=cfg.frame_shift_ms,
            dither=cfg.dither,
            sample_frequency=float(cfg.sample_rate),
            energy_floor=0.0,
        )
        return feats.to(torch.float32)


class SpecAugmentConfig(ComponentConfig):
    """SpecAugment masks (lhotse/icefall defaults, without time warping)."""

    num_feature_masks: int = Field(2, ge=0)
    features_mask_size: int = Field(27, ge=1)
    num_frame_masks: int = Field(10, ge=0)
    frames_mask_size: int = Field(100, ge=1)
    max_frames_mask_fraction: float = Field(0.15, ge=0, le=1)
    p: float = Field(0.9, ge=0, le=1)


class SpecAugment:
    """Training augmentation on ``(T, F)`` features: frequency and time masks.

    Masked cells get the utterance mean (as in lhotse). The number of time masks shrinks on
    short clips so at most ``max_frames_mask_fraction`` of the frames are masked. All draws
    come from the given ``generator`` so an item is reproducible from its seed.
    """

    def __init__(self, config: SpecAugmentConfig | None = None) -> None:
        self.config = config or SpecAugmentConfig()

    def _mask(self, feats: torch.Tensor, axis: int, count: int, max_width: int,
              value: float, generator: torch.Generator | None) -> None:
        size = feats.shape[axis]
        for _ in range(count):
            width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
            width = min(width, size)
            if width == 0:
                continue
            start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
            feats.narrow(axis, start, width).fill_(value)

    def __call__(self, feats: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        cfg = self.config
        if feats.dim() != 2 or feats.shape[0] == 0:
            return feats
        if float(torch.rand((), generator=generator)) >= cfg.p:
            return feats
        out = feats.clone()
        value = float(feats.mean())
        self._mask(out, 1, cfg.num_feature_masks, cfg.features_mask_size, value, generator)
        max_total = cfg.max_frames_mask_fraction * out.shape[0]
        count = min(cfg.num_frame_masks, math.ceil(max_total / cfg.frames_mask_size))
        if count > 0:
            width = min(cfg.frames_mask_size, int(max_total // count))
            self._mask(out, 0, count, width, value, generator)
        return out
