"""Small numpy signal-processing kit shared by the demo synthesizers.

Everything is vectorised numpy (no scipy), so the corpus builds wherever alp-data installs and
2,000 clips render in seconds. Filters work in the frequency domain: a short-time Fourier
transform lets spectral envelopes (formants, noise colours) change from frame to frame.
"""

from __future__ import annotations

import numpy as np

N_FFT = 512
HOP = N_FFT // 4
_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann: overlap-adds to a constant at hop N/4
TABLE_SIZE = 2048
_OLA_GAIN = float(np.sum(_WINDOW**2) / HOP)


def wavetable(amps: np.ndarray) -> np.ndarray:
    """One period of sum(a_n sin(2 pi n t)) plus a wrap-around sample, for :func:`lookup`."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[1 : len(amps) + 1] = -0.5j * TABLE_SIZE * amps
    table = np.fft.irfft(spectrum, n=TABLE_SIZE)
    return np.append(table, table[0])


def lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Read a :func:`wavetable` at ``phase`` (in cycles) with linear interpolation."""
    idx = (phase % 1.0) * TABLE_SIZE
    i0 = idx.astype(np.int64)
    frac = idx - i0
    return table[i0] * (1.0 - frac) + table[i0 + 1] * frac


def rfft_freqs(sample_rate: int, n_fft: int = N_FFT) -> np.ndarray:
    """Centre frequency (Hz) of each one-sided FFT bin."""
    return np.fft.rfftfreq(n_fft, 1.0 / sample_rate)


def num_frames(num_samples: int) -> int:
    """STFT frames covering ``num_samples`` (with the padding :func:`stft` adds)."""
    return (num_samples + 2 * N_FFT) // HOP


def frame_times(num_samples: int, sample_rate: int) -> np.ndarray:
    """Time (s) of each STFT frame's centre, aligned with :func:`stft`."""
    return np.arange(num_frames(num_samples)) * HOP / sample_rate - (N_FFT // 2) / sample_rate


def stft(x: np.ndarray) -> np.ndarray:
    """Complex STFT (frames x bins) with Hann windows; N_FFT zero padding at each edge."""
    n = len(x)
    frames = num_frames(n)
    total = (frames - 1) * HOP + N_FFT
    padded = np.zeros(total)
    padded[N_FFT : N_FFT + n] = x
    view = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:frames]
    return np.fft.rfft(view * _WINDOW, axis=1)


def istft(spec: np.ndarray, num_samples: int) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add (exact for an unmodified spectrum)."""
    frames = np.fft.irfft(spec, n=N_FFT, axis=1) * _WINDOW
    count = frames.shape[0]
    out = np.zeros((count + 3, HOP))
    for part in range(N_FFT // HOP):
        out[part : part + count] += frames[:, part * HOP : (part + 1) * HOP]
    flat = out.reshape(-1) / _OLA_GAIN
    return flat[N_FFT : N_FFT + num_samples]


def shape_noise(
    envelope: np.ndarray, num_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """White noise filtered by a per-frame magnitude envelope (frames x bins, or bins)."""
    spec = stft(rng.standard_normal(num_samples))
    return istft(spec * envelope, num_samples)


def filter_signal(x: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """Filter ``x`` by a per-frame (frames x bins) or fixed (bins) magnitude envelope."""
    return istft(stft(x) * envelope, len(x))


def bandpass(
    x: np.ndarray, sample_rate: int, low: float, high: float, slope: float = 2.0
) -> np.ndarray:
    """Zero-phase band-pass of the whole signal in one FFT (time-invariant, so no STFT)."""
    size = 1 << int(np.ceil(np.log2(max(len(x), 2) + 64)))
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    return np.fft.irfft(np.fft.rfft(x, size) * band(freqs, low, high, slope), size)[: len(x)]


def resonance(freqs: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Magnitude of a resonant peak (Lorentzian), broadcasting centre/bandwidth over frames."""
    return 1.0 / np.sqrt(1.0 + ((freqs - centre) / (0.5 * bandwidth)) ** 2)


def band(freqs: np.ndarray, low: float, high: float, slope: float = 2.0) -> np.ndarray:
    """Smooth band-pass magnitude between ``low`` and ``high`` Hz (Butterworth-like)."""
    f = np.maximum(freqs, 1.0)
    highpass = 1.0 / np.sqrt(1.0 + (low / f) ** (2 * slope))
    lowpass = 1.0 / np.sqrt(1.0 + (f / high) ** (2 * slope))
    return highpass * lowpass


def pink_tilt(freqs: np.ndarray, exponent: float = 0.5) -> np.ndarray:
    """Magnitude tilt 1/f**exponent (0.5: pink, 1.0: brown), flat below 20 Hz."""
    return 1.0 / np.maximum(freqs, 20.0) ** exponent * 20.0**exponent


def adsr(
    num_samples: int,
    sample_rate: int,
    attack: float,
    decay: float,
    sustain: float,
    release: float,
) -> np.ndarray:
    """Attack-decay-sustain-release envelope spanning exactly ``num_samples``."""
    t = np.arange(num_samples) / sample_rate
    duration = num_samples / sample_rate
    release = min(release, 0.5 * duration)
    attack = max(min(attack, 0.5 * (duration - release)), 1e-3)
    env = np.where(t < attack, t / attack, 1.0)
    after = np.maximum(t - attack, 0.0)
    env = np.where(t >= attack, sustain + (1.0 - sustain) * np.exp(-after / max(decay, 1e-3)), env)
    release_start = duration - release
    fade = np.clip((duration - t) / max(release, 1e-3), 0.0, 1.0)
    return np.where(t > release_start, env * fade, env)


def decay_env(num_samples: int, sample_rate: int, tau: float, attack: float = 0.002) -> np.ndarray:
    """Fast attack then exponential decay with time constant ``tau`` seconds."""
    t = np.arange(num_samples) / sample_rate
    return np.minimum(t / attack, 1.0) * np.exp(-t / tau)


def smooth_random(
    num_samples: int, sample_rate: int, rate_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """A slowly varying random curve (about zero mean, unit scale) changing at ``rate_hz``."""
    knots = max(int(num_samples / sample_rate * rate_hz) + 2, 2)
    values = rng.standard_normal(knots)
    return np.interp(np.linspace(0, knots - 1, num_samples), np.arange(knots), values)


def place(target: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add ``sound`` into ``target`` at sample ``start``, cropping what falls outside."""
    if start >= len(target) or start + len(sound) <= 0:
        return
    lo = max(start, 0)
    hi = min(start + len(sound), len(target))
    target[lo:hi] += sound[lo - start : hi - start]


def rms(x: np.ndarray) -> float:
    """Root mean square, never zero (safe to divide by)."""
    return float(np.sqrt(np.mean(x**2)) + 1e-12)


def finalize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random level plus a faint noise floor, peak-normalised; returns 16-bit PCM samples.

    The random peak (-11 to -0.5 dBFS) and noise floor keep loudness from giving any class away.
    """
    x = x - np.mean(x)
    x = x / (np.max(np.abs(x)) + 1e-9)
    x = x + rng.standard_normal(len(x)) * 10 ** (rng.uniform(-62.0, -48.0) / 20.0)
    x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (rng.uniform(-11.0, -0.5) / 20.0)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
