"""Log-mel filterbank features (Kaldi-compatible) and SpecAugment masking.

The paper's encoder consumes 80-bin Kaldi fbank at a 10 ms hop. :class:`Fbank` computes the
same features as ``torchaudio.compliance.kaldi.fbank`` (the settings icefall/lhotse recipes
use: DC removal, 0.97 preemphasis, povey window, FFT padded to a power of two, power
spectrum, Kaldi's mel triangles from 20 Hz to Nyquist, log floored at float32 epsilon,
frames snipped at the edges) in fewer, cheaper steps: the window and the mel matrix are built
once per config and device, the frames are written straight into a zero-padded FFT buffer,
Kaldi's int16 scale (2**15) rides on the window instead of a scaled copy of the wave (a power
of two: the same floats), and the mel projection only multiplies the FFT bins each group of
filters covers. :meth:`Fbank.padded` writes a batch straight into a zero-padded
``(B, T, F)`` tensor, e.g. a loader worker's shared-memory batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from pydantic import Field
from torchaudio.compliance import kaldi

from alp_core.config import ComponentConfig

__all__ = ["Fbank", "FbankConfig", "Mask", "SpecAugment", "SpecAugmentConfig"]

# Kaldi's fixed options that the config does not expose (kaldi.fbank's defaults)
_PREEMPHASIS = 0.97
_LOW_FREQ, _HIGH_FREQ = 20.0, 0.0  # high <= 0: offset from Nyquist
_VTLN_LOW, _VTLN_HIGH, _VTLN_WARP = 100.0, -500.0, 1.0
_EPSILON = torch.finfo(torch.float32).eps  # Kaldi's floor before the log
# Kaldi reads int16 samples: the [-1, 1] wave times 2**15. Scaling by a power of two commutes
# with float rounding (no overflow, no subnormals here), so it is applied with the window.
_INT16_SCALE = 32768.0
_MEL_GROUP = 16  # filters per block of the blocked mel projection (CPU)
_CPU_BLOCK_FRAMES = 512  # frames per FFT pass on the CPU (about 1 MiB of buffer)


class FbankConfig(ComponentConfig):
    """Kaldi fbank options (the paper: 80 bins, 25 ms window, 10 ms hop, no dither)."""

    num_mel_bins: int = Field(80, gt=0)
    frame_length_ms: float = Field(25.0, gt=0)
    frame_shift_ms: float = Field(10.0, gt=0)
    dither: float = Field(0.0, ge=0)
    sample_rate: int = Field(16000, gt=0)
    # The arithmetic of framing, FFT and mel projection; the features are float32 either way.
    # float32 is Kaldi's (and kaldi.fbank's on float32 waves). An FFT rounds relative to the
    # frame's loudest component, so bins far below it carry rounding: up to 5e-3 (log-mel) on
    # the loader benchmark's clips (a tone over noise 16 dB down), 2e-2 with noise 60 dB down
    # (benchmarks/fbank_precision.py). FFT libraries round differently there: ALP's CPU
    # features equal kaldi.fbank's within 2e-6 because both use torch's CPU FFT; scipy's FFT
    # moves them by up to 1.7e-2, an H200's cuFFT by up to 7.2e-3 on the loader's clips
    # (README, Benchmarks). float64 gives Kaldi's exact result to float32 storage (1e-6)
    # with any FFT on any device, for about twice the CPU time: use it where features
    # computed on different devices must agree.
    precision: Literal["float32", "float64"] = "float32"


@dataclass(frozen=True)
class _MelBlock:
    """Filters ``[first, last)`` of the bank, non-zero only on FFT bins ``[low, high)``."""

    first: int
    last: int
    low: int
    high: int
    weights: torch.Tensor  # (high - low, last - first)


@dataclass(frozen=True)
class _Plan:
    """Per-device constants: the window and the mel projection (full, and in blocks)."""

    window: torch.Tensor  # (window_samples,): Kaldi's povey window times _INT16_SCALE
    mel: torch.Tensor  # (fft_size // 2 + 1, num_mel_bins); Kaldi's banks, Nyquist bin zero
    # (both in the config's precision; the banks are kaldi.get_mel_banks' float32 values)
    blocks: tuple[_MelBlock, ...]


class Fbank:
    """Callable: float32 wave ``(num_samples,)`` in [-1, 1] -> log-mel ``(num_frames, bins)``.

    The wave is scaled by 32768 like Kaldi's int16 input; frames are snipped at the edges, so
    a wave shorter than one window yields zero frames. The features are computed on the
    wave's device (a CUDA wave gives CUDA features) and equal ``kaldi.fbank`` with
    ``energy_floor=0`` to float32 rounding. With ``precision="float64"`` they are computed
    in float64 and equal ``kaldi.fbank`` of the float64 wave to float64 rounding (the log's
    floor stays float32 epsilon, Kaldi's own), then stored as float32. :meth:`batch`
    computes several waves in one pass, :meth:`padded` writes them into one zero-padded
    batch tensor. On the CPU a wave's features never depend on the other waves of a batch
    (its frames go through the FFT alone), so they are the same floats as :meth:`__call__`
    gives.
    """

    def __init__(self, config: FbankConfig | None = None) -> None:
        self.config = config or FbankConfig()
        rate = float(self.config.sample_rate)
        # the same expressions as torchaudio.compliance.kaldi, so frame counts agree
        self.window_samples = int(rate * self.config.frame_length_ms * 0.001)
        self.shift_samples = int(rate * self.config.frame_shift_ms * 0.001)
        if self.window_samples < 2 or self.shift_samples < 1:
            raise ValueError(
                f"frame_length_ms={self.config.frame_length_ms} and frame_shift_ms="
                f"{self.config.frame_shift_ms} at {self.config.sample_rate} Hz give a window "
                f"of {self.window_samples} and a shift of {self.shift_samples} samples; "
                "need a window of at least 2 samples and a shift of at least 1"
            )
        self.fft_size = 1 << (self.window_samples - 1).bit_length()
        self.dtype = torch.float64 if self.config.precision == "float64" else torch.float32
        self._plans: dict[torch.device, _Plan] = {}

    @property
    def num_mel_bins(self) -> int:
        return self.config.num_mel_bins

    def num_frames(self, num_samples: int) -> int:
        """Frames produced from ``num_samples`` samples: ``1 + (n - window) // shift``."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.shift_samples

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_plans"] = {}  # rebuilt on first use (keeps pickles small, devices local)
        return state

    def _plan(self, device: torch.device) -> _Plan:
        plan = self._plans.get(device)
        if plan is None:
            plan = self._plans[device] = self._build_plan(device)
        return plan

    def _build_plan(self, device: torch.device) -> _Plan:
        cfg = self.config
        banks, _ = kaldi.get_mel_banks(cfg.num_mel_bins, self.fft_size, float(cfg.sample_rate),
                                       _LOW_FREQ, _HIGH_FREQ, _VTLN_LOW, _VTLN_HIGH, _VTLN_WARP)
        # kaldi.fbank pads the banks with a zero column for the Nyquist bin
        mel = torch.nn.functional.pad(banks.to(torch.float32), (0, 1)).T.contiguous()
        mel = mel.to(self.dtype)
        window = torch.hann_window(self.window_samples, periodic=False,
                                   dtype=self.dtype).pow(0.85)  # Kaldi's povey window
        window = window * _INT16_SCALE  # exact: a power of two
        blocks = []
        for first in range(0, cfg.num_mel_bins, _MEL_GROUP):
            last = min(first + _MEL_GROUP, cfg.num_mel_bins)
            used = (mel[:, first:last] != 0).any(dim=1).nonzero().flatten()
            low, high = (int(used[0]), int(used[-1]) + 1) if used.numel() else (0, 0)
            blocks.append(_MelBlock(first, last, low, high,
                                    mel[low:high, first:last].contiguous().to(device)))
        return _Plan(window=window.to(device), mel=mel.to(device), blocks=tuple(blocks))

    def _check(self, wave: torch.Tensor) -> None:
        if wave.dim() != 1:
            raise ValueError(f"Fbank expects a mono wave (num_samples,), got {tuple(wave.shape)}")

    def _frames(self, x: torch.Tensor, first: int, out: torch.Tensor, window: torch.Tensor,
                generator: torch.Generator | None = None) -> None:
        """Kaldi's frames ``first ..`` of the wave ``x`` into ``out[:, :window]`` (one row per
        frame): dither, DC removal, preemphasis (sample 0 against itself), window (which
        carries the int16 scale, so dither is drawn in int16 units and divided by it)."""
        win, shift = self.window_samples, self.shift_samples
        frames = x.as_strided((out.shape[0], win), (shift, 1), x.storage_offset() + first * shift)
        if self.config.dither != 0.0:  # from the clip's generator when given (reproducible)
            noise = (torch.randn(frames.shape, device=x.device, dtype=x.dtype)
                     if generator is None else
                     torch.randn(frames.shape, generator=generator, dtype=x.dtype).to(x.device))
            frames = frames + noise * self.config.dither / _INT16_SCALE
        frames = frames - frames.mean(dim=1, keepdim=True)
        body = out[:, :win]
        # x[j] - 0.97 * x[j - 1] rounded as kaldi.fbank does (a fused ``alpha=`` drifts more)
        torch.sub(frames[:, 1:], frames[:, :-1] * _PREEMPHASIS, out=body[:, 1:])
        torch.sub(frames[:, :1], frames[:, :1] * _PREEMPHASIS, out=body[:, :1])
        body.mul_(window)

    def _log_mel(self, padded: torch.Tensor, plan: _Plan, out: torch.Tensor) -> None:
        """Power spectrum of the zero-padded frames -> mel energies -> log with Kaldi's floor,
        written into ``out`` (float32 rows of the result); computed in ``padded``'s dtype."""
        spectrum = torch.fft.rfft(padded)
        power = spectrum.real.square().add_(spectrum.imag.square())
        if out.dtype != power.dtype:  # float64 precision: the log in float64, stored float32
            energies = torch.empty(out.shape, dtype=power.dtype, device=out.device)
            self._log_mel_of_power(power, plan, energies)
            out.copy_(energies)
            return
        self._log_mel_of_power(power, plan, out)

    @staticmethod
    def _log_mel_of_power(power: torch.Tensor, plan: _Plan, out: torch.Tensor) -> None:
        """``log(max(power @ mel, eps))`` into ``out`` (same dtype as ``power``)."""
        if power.device.type == "cpu":
            # each filter covers a few FFT bins: multiply only those, one block at a time
            for block in plan.blocks:
                if block.high > block.low:
                    torch.mm(power[:, block.low:block.high], block.weights,
                             out=out[:, block.first:block.last])
                else:
                    out[:, block.first:block.last] = 0.0
        else:
            torch.mm(power, plan.mel, out=out)
        out.clamp_min_(_EPSILON).log_()

    def _compute(self, waves: Sequence[torch.Tensor], counts: Sequence[int],
                 outs: Sequence[torch.Tensor], stacked: torch.Tensor | None = None,
                 generators: Sequence[torch.Generator | None] | None = None) -> None:
        """Features of ``waves[i]`` into ``outs[i]`` (``(counts[i], bins)``, contiguous).

        On the CPU each wave's frames go through the FFT in blocks of ``_CPU_BLOCK_FRAMES``
        (cache-sized), one wave at a time, so its features do not depend on its neighbours;
        on a GPU all frames go at once, into ``stacked`` when the outputs are its consecutive
        rows, else into a scratch tensor copied out.
        """
        device = waves[0].device
        plan = self._plan(device)
        bins = self.config.num_mel_bins
        gens = list(generators) if generators is not None else [None] * len(waves)
        if device.type == "cpu":
            limit = min(max(counts), _CPU_BLOCK_FRAMES)
            buf = torch.empty(limit, self.fft_size, dtype=self.dtype)
            buf[:, self.window_samples:].zero_()  # the FFT's zero padding; rows are overwritten
            for wave, count, out, gen in zip(waves, counts, outs, gens, strict=True):
                x = wave.to(self.dtype).contiguous()
                for first in range(0, count, limit):
                    take = min(count - first, limit)
                    self._frames(x, first, buf[:take], plan.window, gen)
                    self._log_mel(buf[:take], plan, out[first:first + take])
            return
        total = sum(counts)
        buf = torch.zeros(total, self.fft_size, dtype=self.dtype, device=device)
        row = 0
        for wave, count, gen in zip(waves, counts, gens, strict=True):
            if count:
                self._frames(wave.to(self.dtype).contiguous(), 0, buf[row:row + count],
                             plan.window, gen)
                row += count
        target = stacked if stacked is not None else torch.empty(
            total, bins, dtype=torch.float32, device=device)
        self._log_mel(buf, plan, target)
        if stacked is None:
            for out, piece in zip(outs, target.split(list(counts)), strict=True):
                out.copy_(piece)

    def __call__(self, wave: torch.Tensor, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """Log-mel ``(num_frames, bins)`` of ``wave``; ``generator`` (a CPU generator) draws
        the dither noise when ``dither`` > 0 (the global stream without one)."""
        self._check(wave)
        count = self.num_frames(wave.shape[0])
        out = torch.empty(count, self.config.num_mel_bins, dtype=torch.float32,
                          device=wave.device)
        if count:
            self._compute([wave], [count], [out], stacked=out, generators=[generator])
        return out

    def _checked_counts(self, waves: Sequence[torch.Tensor]) -> list[int]:
        for wave in waves:
            self._check(wave)
        devices = {w.device for w in waves}
        if len(devices) > 1:
            raise ValueError("Fbank expects all waves of a batch on one device, got "
                             f"{sorted(str(d) for d in devices)}")
        return [self.num_frames(int(w.shape[0])) for w in waves]

    def batch(self, waves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[self(w) for w in waves]`` computed together (waves on one device): on a GPU one
        FFT and one mel projection for all, which pays for many clips."""
        counts = self._checked_counts(waves)
        if not any(counts):
            return [w.new_zeros(0, self.config.num_mel_bins, dtype=torch.float32) for w in waves]
        stacked = torch.empty(sum(counts), self.config.num_mel_bins, dtype=torch.float32,
                              device=waves[0].device)
        outs = list(stacked.split(counts))
        self._compute(waves, counts, outs, stacked=stacked)
        return outs

    def padded(self, waves: Sequence[torch.Tensor], out: torch.Tensor | None = None,
               generators: Sequence[torch.Generator | None] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features (B, T, F), lengths (B,))``: the features of ``waves`` zero-padded to the
        longest, row ``b`` equal to ``self(waves[b])`` on its first ``lengths[b]`` frames.

        ``out`` is where to write them: a contiguous float32 tensor ``(B, T', F)`` with
        ``T' >= T`` on the waves' device (e.g. a batch in shared memory); every element not
        holding a frame is set to zero, so it may come uninitialised. ``generators`` (one per
        wave) draw each wave's dither noise, as :meth:`__call__`'s ``generator``.
        """
        counts = self._checked_counts(waves)
        bins = self.config.num_mel_bins
        frames = max(counts, default=0)
        device = waves[0].device if waves else torch.device("cpu")
        if out is None:
            out = torch.empty(len(waves), frames, bins, dtype=torch.float32, device=device)
        elif (out.dim() != 3 or out.shape[0] != len(waves) or out.shape[1] < frames
              or out.shape[2] != bins or out.dtype != torch.float32
              or not out.is_contiguous() or out.device != device):
            raise ValueError(f"out must be a contiguous float32 ({len(waves)}, >= {frames}, "
                             f"{bins}) tensor on {device}, got {out.dtype} "
                             f"{tuple(out.shape)} on {out.device}")
        rows = [row[:count] for row, count in zip(out, counts, strict=True)]
        for row, count in zip(out, counts, strict=True):
            row[count:].zero_()  # the padding only: the frames are written below
        keep = [i for i, count in enumerate(counts) if count]
        if keep:
            gens = list(generators) if generators is not None else [None] * len(waves)
            self._compute([waves[i] for i in keep], [counts[i] for i in keep],
                          [rows[i] for i in keep], generators=[gens[i] for i in keep])
        return out, torch.tensor(counts, dtype=torch.int64)

    def stacked(self, waves: torch.Tensor, sizes: Sequence[int]) -> torch.Tensor:
        """Features ``(B, T, F)`` of the zero-padded waves ``waves`` ``(B, S)`` (row ``b``
        holding ``sizes[b]`` samples) in one pass over all rows: every row is framed to the
        longest row's frame count, the frames past a row's own count are computed on its
        padding and then zeroed. A handful of kernels per batch whatever its size, which is
        what a GPU wants; row ``b``'s first ``num_frames(sizes[b])`` frames equal
        ``self(waves[b, :sizes[b]])`` to float32 rounding (a batched FFT and matrix product
        may round differently), the rest are zero. On the CPU :meth:`padded` is the faster
        and bit-exact path."""
        if waves.dim() != 2 or waves.shape[0] != len(sizes):
            raise ValueError(f"stacked expects waves (B, S) with B = len(sizes) = {len(sizes)}, "
                             f"got {tuple(waves.shape)}")
        if any(size > waves.shape[1] or size < 0 for size in sizes):
            raise ValueError(f"sizes {list(sizes)} must lie within the {waves.shape[1]} "
                             "samples of each row")
        counts = [self.num_frames(int(size)) for size in sizes]
        frames = max(counts, default=0)
        bins = self.config.num_mel_bins
        device = waves.device
        out = torch.zeros(len(sizes), frames, bins, dtype=torch.float32, device=device)
        if frames == 0:
            return out
        plan = self._plan(device)
        x = waves.to(self.dtype).contiguous()
        rows, win, shift = x.shape[0], self.window_samples, self.shift_samples
        if x.shape[1] < win + (frames - 1) * shift:  # cannot happen for a row's own count
            raise ValueError("waves hold fewer samples than their frame counts need")
        framed = x.as_strided((rows, frames, win), (x.stride(0), shift, 1))
        if self.config.dither != 0.0:
            noise = torch.randn(framed.shape, device=device, dtype=x.dtype) * self.config.dither
            framed = framed + noise / _INT16_SCALE
        framed = framed - framed.mean(dim=2, keepdim=True)
        padded = torch.zeros(rows, frames, self.fft_size, dtype=self.dtype, device=device)
        body = padded[:, :, :win]
        torch.sub(framed[:, :, 1:], framed[:, :, :-1] * _PREEMPHASIS, out=body[:, :, 1:])
        torch.sub(framed[:, :, :1], framed[:, :, :1] * _PREEMPHASIS, out=body[:, :, :1])
        body.mul_(plan.window)
        self._log_mel(padded.view(rows * frames, self.fft_size), plan,
                      out.view(rows * frames, bins))
        lengths = torch.tensor(counts, dtype=torch.int64).to(device, non_blocking=True)
        past = torch.arange(frames, device=device)[None, :] >= lengths[:, None]
        out.masked_fill_(past[:, :, None], 0.0)
        return out


class SpecAugmentConfig(ComponentConfig):
    """SpecAugment masks (lhotse/icefall defaults, without time warping)."""

    num_feature_masks: int = Field(2, ge=0)
    features_mask_size: int = Field(27, ge=1)
    num_frame_masks: int = Field(10, ge=0)
    frames_mask_size: int = Field(100, ge=1)
    max_frames_mask_fraction: float = Field(0.15, ge=0, le=1)
    p: float = Field(0.9, ge=0, le=1)


class Mask(NamedTuple):
    """One SpecAugment mask: ``width`` cells from ``start`` along ``axis`` (0: time, 1:
    frequency) of a clip's ``(T, F)`` features."""

    axis: int
    start: int
    width: int


class SpecAugment:
    """Training augmentation on ``(T, F)`` features: frequency and time masks.

    Masked cells get the utterance mean (as in lhotse). The number of time masks shrinks on
    short clips so at most ``max_frames_mask_fraction`` of the frames are masked. All draws
    come from the given ``generator`` so an item is reproducible from its seed.
    """

    def __init__(self, config: SpecAugmentConfig | None = None) -> None:
        self.config = config or SpecAugmentConfig()

    @staticmethod
    def _draw(size: int, count: int, max_width: int, axis: int,
              generator: torch.Generator | None, masks: list[Mask]) -> None:
        for _ in range(count):
            width = int(torch.randint(0, max_width + 1, (1,), generator=generator))
            width = min(width, size)
            if width == 0:
                continue
            start = int(torch.randint(0, size - width + 1, (1,), generator=generator))
            masks.append(Mask(axis, start, width))

    def draw(self, num_frames: int, num_bins: int, generator: torch.Generator | None = None
             ) -> tuple[Mask, ...] | None:
        """The masks for features of shape ``(num_frames, num_bins)``: ``None`` when the clip
        is not augmented (probability ``1 - p``, or no frames), else frequency masks first,
        then time masks. The draws depend on the shape only, not on the values, so a loader
        worker can draw them before the features exist (see :mod:`alp_data.deferred`)."""
        cfg = self.config
        if num_frames == 0:
            return None
        if float(torch.rand((), generator=generator)) >= cfg.p:
            return None
        masks: list[Mask] = []
        self._draw(num_bins, cfg.num_feature_masks, cfg.features_mask_size, 1, generator,
                   masks)
        max_total = cfg.max_frames_mask_fraction * num_frames
        count = min(cfg.num_frame_masks, math.ceil(max_total / cfg.frames_mask_size))
        if count > 0:
            width = min(cfg.frames_mask_size, int(max_total // count))
            self._draw(num_frames, count, width, 0, generator, masks)
        return tuple(masks)

    @staticmethod
    def apply(feats: torch.Tensor, masks: Sequence[Mask]) -> None:
        """Fill ``masks`` of ``feats`` ``(T, F)`` in place with the mean of ``feats``."""
        if not masks:
            return
        value = float(feats.mean())
        for mask in masks:
            feats.narrow(mask.axis, mask.start, mask.width).fill_(value)

    def __call__(self, feats: torch.Tensor, generator: torch.Generator | None = None, *,
                 inplace: bool = False) -> torch.Tensor:
        """The masked features: a new tensor, or ``feats`` itself masked when ``inplace``
        (the same draws and masks either way)."""
        if feats.dim() != 2:
            return feats
        masks = self.draw(feats.shape[0], feats.shape[1], generator)
        if masks is None:
            return feats
        out = feats if inplace else feats.clone()
        self.apply(out, masks)
        return out
