"""Environmental-sound clips: one procedurally made sound event class over a background bed.

Every event class has its own recipe (filtered noise bursts, AM/FM tones, damped resonant
impulses) with random variation in pitch, timing and count, so a class is a family of sounds
rather than one template. The background is mixed at a random signal-to-noise ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from alp_data.demo import dsp

EVENTS = (
    "dog_bark", "siren", "rain", "door_knock", "engine",
    "bird_chirp", "footsteps", "glass_clink", "alarm_beep", "thunder",
)
BACKGROUNDS = ("quiet", "street", "babble", "wind")

Rng = np.random.Generator
Recipe = Callable[[int, int, Rng], tuple[np.ndarray, int | None]]


def sample_attributes(rng: Rng) -> dict[str, Any]:
    """Draw the event class and background (uniformly: balanced classes)."""
    return {
        "event": EVENTS[int(rng.integers(len(EVENTS)))],
        "background": BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))],
    }


def _times(n: int, sr: int) -> np.ndarray:
    return np.arange(n) / sr


def _onsets(n: int, sr: int, count: int, gap: float, rng: Rng) -> list[int]:
    """``count`` onsets (samples) about ``gap`` seconds apart, starting somewhere early."""
    start = rng.uniform(0.05, max(0.1, n / sr - count * gap - 0.2))
    steps = start + np.cumsum(np.r_[0.0, gap * rng.uniform(0.8, 1.25, count - 1)])
    return [int(s * sr) for s in steps if s * sr < n - 0.05 * sr]


def _dog_bark(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    out, count = np.zeros(n), int(rng.integers(2, 6))
    onsets = _onsets(n, sr, count, rng.uniform(0.3, 0.6), rng)
    for onset in onsets:
        m = int(rng.uniform(0.12, 0.25) * sr)
        u = np.arange(m) / m
        f0 = rng.uniform(320, 600) * (1.15 - 0.35 * u)
        saw = 2.0 * (np.cumsum(f0 / sr) % 1.0) - 1.0 + 0.35 * rng.standard_normal(m)
        bark = dsp.bandpass(saw, sr, 450, 2600) * np.sin(np.pi * u) ** 0.5 * np.exp(-3 * u)
        dsp.place(out, bark, onset)
    return out, len(onsets)


def _siren(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    t = _times(n, sr)
    low, span = rng.uniform(550, 800), rng.uniform(350, 700)
    sweep = 2 * np.pi * rng.uniform(0.3, 0.9) * t + rng.uniform(0, 6)
    freq = low + span * (0.5 - 0.5 * np.cos(sweep))
    phase = 2 * np.pi * np.cumsum(freq / sr)
    tone = np.sin(phase) + 0.45 * np.sin(2 * phase) + 0.25 * np.sin(3 * phase)
    return tone * np.minimum(t / 0.2, 1.0), None


def _rain(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    drops = (rng.random(n) < rng.uniform(150, 600) / sr) * rng.exponential(1.0, n)
    bed = 0.08 * rng.standard_normal(n)
    swell = 1.0 + 0.3 * dsp.smooth_random(n, sr, 0.7, rng)
    low, high = rng.uniform(700, 1500), rng.uniform(5000, 7500)
    return dsp.bandpass(drops + bed, sr, low, high) * swell, None


def _door_knock(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    out, total = np.zeros(n), 0
    groups = int(rng.integers(1, 3))
    low, mid = rng.uniform(140, 300), rng.uniform(550, 950)
    for group_start in _onsets(n, sr, groups, rng.uniform(1.0, 1.4), rng):
        knocks = int(rng.integers(2, 5))
        for k in range(knocks):
            m = int(0.12 * sr)
            t = _times(m, sr)
            body = np.sin(2 * np.pi * low * t) * np.exp(-t / 0.03)
            body += 0.6 * np.sin(2 * np.pi * mid * t) * np.exp(-t / 0.015)
            body[:40] += rng.standard_normal(40) * 0.5
            onset = group_start + int(k * rng.uniform(0.15, 0.24) * sr)
            dsp.place(out, body, onset)
            total += onset < n  # a knock past the clip's end is not placed: not counted
    return out, total


def _engine(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    t = _times(n, sr)
    rpm = rng.uniform(28, 48) * (1.0 + 0.08 * dsp.smooth_random(n, sr, 0.6, rng))
    phase = np.cumsum(rpm / sr)
    hum = dsp.lookup(dsp.wavetable(1.0 / np.arange(1, 16)), phase)
    hum *= 1.0 + 0.5 * np.sin(np.pi * phase)
    rumble = dsp.bandpass(rng.standard_normal(n), sr, 30, 350)
    return (hum + 0.6 * rumble / dsp.rms(rumble) * dsp.rms(hum)) * np.minimum(t / 0.3, 1.0), None


def _bird_chirp(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    out, count = np.zeros(n), int(rng.integers(3, 9))
    base, upward = rng.uniform(2500, 4500), rng.uniform() < 0.5
    onsets = _onsets(n, sr, count, rng.uniform(0.12, 0.35), rng)
    for onset in onsets:
        m = int(rng.uniform(0.04, 0.12) * sr)
        u = np.arange(m) / m
        sweep = base * (1.0 + (0.6 * u if upward else 0.6 * (1 - u))) * rng.uniform(0.9, 1.1)
        chirp = np.sin(2 * np.pi * np.cumsum(sweep / sr)) * np.sin(np.pi * u) ** 2
        dsp.place(out, chirp, onset)
    return out, len(onsets)


def _footsteps(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    out = np.zeros(n)
    gap = 1.0 / rng.uniform(1.6, 2.3)
    onsets = _onsets(n, sr, max(int(n / sr / gap), 2), gap, rng)
    for onset in onsets:
        m = int(0.15 * sr)
        t = _times(m, sr)
        thump = dsp.bandpass(rng.standard_normal(m), sr, 60, 500) * np.exp(-t / 0.03)
        scuff = dsp.bandpass(rng.standard_normal(m), sr, 1800, 5000) * np.exp(-t / 0.02) * 0.3
        dsp.place(out, (thump + scuff) * rng.uniform(0.7, 1.0), onset)
    return out, len(onsets)


def _glass_clink(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    out, count = np.zeros(n), int(rng.integers(2, 6))
    base = rng.uniform(2400, 4200)
    ratios = np.array([1.0, 1.58, 2.31]) * (1.0 + rng.uniform(-0.02, 0.02, 3))
    onsets = _onsets(n, sr, count, rng.uniform(0.25, 0.5), rng)
    for onset in onsets:
        m = int(0.4 * sr)
        t = _times(m, sr)
        ring = sum(
            a * np.sin(2 * np.pi * base * r * t) * np.exp(-t / (0.15 / r))
            for a, r in zip((1.0, 0.5, 0.3), ratios, strict=True)
            if base * r < 0.45 * sr
        )
        dsp.place(out, ring * rng.uniform(0.6, 1.0), onset)
    return out, len(onsets)


def _alarm_beep(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    t = _times(n, sr)
    freq, on = rng.uniform(1800, 3200), rng.uniform(0.08, 0.2)
    period = on * rng.uniform(1.8, 2.6)
    phase = 2 * np.pi * freq * t
    tone = np.sin(phase) + np.sin(3 * phase) / 3 * (3 * freq < 0.45 * sr)
    shift = rng.uniform(0.0, period)
    gate = ((t + shift) % period) < on
    smooth = np.convolve(gate.astype(float), np.hanning(65) / np.hanning(65).sum(), "same")
    return tone * smooth, int(np.sum(np.diff(gate.astype(int)) == 1))


def _thunder(n: int, sr: int, rng: Rng) -> tuple[np.ndarray, int | None]:
    start = int(rng.uniform(0.0, 0.3) * n)
    m = n - start
    t = _times(m, sr)
    rumble = dsp.bandpass(np.cumsum(rng.standard_normal(m)), sr, 25, rng.uniform(180, 320))
    rumble /= dsp.rms(rumble)
    rumble *= np.exp(-t / rng.uniform(0.8, 1.8)) * np.exp(0.6 * dsp.smooth_random(m, sr, 4.0, rng))
    crack = dsp.bandpass(rng.standard_normal(m), sr, 300, 5000) * np.exp(-t / 0.08)
    out = np.zeros(n)
    dsp.place(out, np.minimum(t / 0.05, 1.0) * (rumble + 0.8 * crack), start)
    return out, None


_RECIPES: dict[str, Recipe] = {
    "dog_bark": _dog_bark, "siren": _siren, "rain": _rain, "door_knock": _door_knock,
    "engine": _engine, "bird_chirp": _bird_chirp, "footsteps": _footsteps,
    "glass_clink": _glass_clink, "alarm_beep": _alarm_beep, "thunder": _thunder,
}


def _background(kind: str, n: int, sr: int, rng: Rng) -> np.ndarray:
    """The background bed, scaled to unit RMS."""
    noise = rng.standard_normal(n)
    freqs = dsp.rfft_freqs(sr)
    if kind == "quiet":
        bed = dsp.shape_noise(dsp.pink_tilt(freqs, 0.5), n, rng)
    elif kind == "street":
        rumble = dsp.bandpass(np.cumsum(noise), sr, 20, 700)
        bed = rumble / dsp.rms(rumble) * (1.0 + 0.6 * np.abs(dsp.smooth_random(n, sr, 0.4, rng)))
    elif kind == "babble":
        voices = sum(np.abs(dsp.smooth_random(n, sr, rng.uniform(3.0, 6.0), rng)) for _ in range(4))
        shape = dsp.resonance(freqs, 550.0, 500.0) + 0.6 * dsp.resonance(freqs, 1600.0, 900.0)
        bed = dsp.istft(dsp.stft(noise) * shape, n) * voices
    else:
        gust = np.exp(0.8 * dsp.smooth_random(n, sr, 0.5, rng))
        bed = dsp.bandpass(noise, sr, 60, rng.uniform(500, 1100), slope=1.5) * gust
    return bed / dsp.rms(bed)


def synthesize(attrs: dict[str, Any], num_samples: int, sample_rate: int, rng: Rng) -> np.ndarray:
    """Render the event over its background; adds ``count`` (events heard, or None)."""
    event, count = _RECIPES[attrs["event"]](num_samples, sample_rate, rng)
    attrs["count"] = count
    level = dsp.rms(event[np.abs(event) > 0.05 * np.max(np.abs(event))]) if event.any() else 1.0
    if attrs["background"] == "quiet":
        snr_db = rng.uniform(32.0, 42.0)
    else:
        snr_db = rng.uniform(4.0, 14.0)
    bed = _background(attrs["background"], num_samples, sample_rate, rng)
    return event + bed * level * 10 ** (-snr_db / 20.0)
