"""Small numpy signal-processing kit shared by the demo synthesizers.

Everything is vectorised numpy (no scipy), so the corpus builds wherever alp-data installs and
2,000 clips render in seconds. Filters work in the frequency domain: a short-time Fourier
transform lets spectral envelopes (formants, noise colours) change from frame to frame.
"""

from __future__ import annotations

import numpy as np

N_FFT = 512
HOP = N_FFT // 4
_WINDOW = np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic Hann: constant overlap-add
TABLE_SIZE = 2048
_OLA_GAIN = float(np.sum(_WINDOW**2) / HOP)


def wavetable(amps: np.ndarray) -> np.ndarray:
    """One period of sum(a_n sin(2 pi n t)) plus a wrap-around sample, for :func:`lookup`."""
    spectrum = np.zeros(TABLE_SIZE // 2 + 1, dtype=complex)
    spectrum[1 : len(amps) + 1] = -0.5j * TABLE_SIZE * amps
    table = np.fft.irfft(spectrum, n=TABLE_SIZE).astype(np.float32)
    return np.append(table, table[0])


def lookup_many(tables: list[np.ndarray], phase: np.ndarray) -> list[np.ndarray]:
    """Read several :func:`wavetable` s at one ``phase`` (cycles), interpolating linearly."""
    idx = (phase % 1.0) * TABLE_SIZE
    i0 = idx.astype(np.int64)
    frac = (idx - i0).astype(np.float32)
    return [table[i0] + (table[i0 + 1] - table[i0]) * frac for table in tables]


def lookup(table: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Read one :func:`wavetable` at ``phase`` (in cycles) with linear interpolation."""
    return lookup_many([table], phase)[0]


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
    """Complex64 STFT (frames x bins), Hann windows, N_FFT zero padding at each edge.

    Single precision halves the cost; the result is quantised to 16 bits in the end anyway.
    """
    n = len(x)
    frames = num_frames(n)
    total = (frames - 1) * HOP + N_FFT
    padded = np.zeros(total, dtype=np.float32)
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


def fft_size(n: int) -> int:
    """Smallest 2^a 3^b 5^c at or above ``n``: a length the FFT handles fast."""
    best = 1 << max(int(n - 1).bit_length(), 0)
    fives = 1
    while fives < best:
        threes = fives
        while threes < best:
            size = threes << max(int(-(-n // threes) - 1).bit_length(), 0)
            best = min(best, size)
            threes *= 3
        fives *= 5
    return best


def bandpass(
    x: np.ndarray, sample_rate: int, low: float, high: float, slope: float = 2.0
) -> np.ndarray:
    """Zero-phase band-pass of the whole signal in one FFT (time-invariant, so no STFT)."""
    size = fft_size(len(x) + 256)
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    return np.fft.irfft(np.fft.rfft(x, size) * band(freqs, low, high, slope), size)[: len(x)]


def resonance(freqs: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Magnitude of a resonant peak (Lorentzian), broadcasting centre/bandwidth over frames."""
    return 1.0 / np.sqrt(1.0 + np.square((freqs - centre) / (0.5 * bandwidth)))


def band(freqs: np.ndarray, low: float, high: float, slope: float = 2.0) -> np.ndarray:
    """Smooth band-pass magnitude between ``low`` and ``high`` Hz (Butterworth-like)."""
    f = np.maximum(freqs, 1.0)
    return 1.0 / np.sqrt((1.0 + _power(low / f, 2 * slope)) * (1.0 + _power(f / high, 2 * slope)))


def _power(x: np.ndarray | float, exponent: float) -> np.ndarray | float:
    """``x ** exponent`` by repeated multiplication when the exponent is a small integer."""
    if float(exponent).is_integer() and 0 < exponent <= 8:
        result = x
        for _ in range(int(exponent) - 1):
            result = result * x
        return result
    return x**exponent


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
    """Attack-decay-sustain-release envelope (float32) spanning exactly ``num_samples``."""
    t = (np.arange(num_samples) / sample_rate).astype(np.float32)
    attack = max(min(attack, 0.25 * num_samples / sample_rate), 1e-3)
    tail = np.exp(-np.maximum(t - np.float32(attack), 0.0) / np.float32(max(decay, 1e-3)))
    env = np.float32(sustain) + np.float32(1.0 - sustain) * tail
    return fade(env, sample_rate, attack, release)


def fade(x: np.ndarray, sample_rate: int, attack: float, release: float) -> np.ndarray:
    """Linear fade-in over ``attack`` and fade-out over ``release`` seconds, in place."""
    n = len(x)
    rise = min(int(attack * sample_rate), n // 2)
    fall = min(int(release * sample_rate), n // 2)
    if rise > 0:
        x[:rise] *= np.linspace(0.0, 1.0, rise, endpoint=False, dtype=np.float32)
    if fall > 0:
        x[n - fall :] *= np.linspace(1.0, 0.0, fall, dtype=np.float32)
    return x


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
    x = x + rng.standard_normal(len(x), dtype=np.float32) * 10 ** (rng.uniform(-62.0, -48.0) / 20)
    x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (rng.uniform(-11.0, -0.5) / 20.0)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
