"""Music clips: melodies, chords or arpeggios in a key, register and tempo on one instrument.

Each instrument is a distinct timbre: harmonic wavetables with their own envelopes (piano,
plucked guitar, organ, flute, bowed strings) or inharmonic partials (bell). Notes follow the
scale of a random key at the clip's tempo; a light synthetic room adds reverberation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alp_data.demo import dsp

INSTRUMENTS = ("piano", "guitar", "organ", "flute", "bell", "strings")
TEMPOS = ("slow", "medium", "fast")
REGISTERS = ("low", "mid", "high")
TEXTURES = ("melody", "chords", "arpeggio")
MODES = ("major", "minor")
SPACES = ("dry", "reverberant")
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

_BPM = {"slow": (60, 78), "medium": (92, 116), "fast": (136, 170)}
_REGISTER_ROOT = {"low": 40, "mid": 57, "high": 74}  # MIDI note at the bottom of the range
_SCALE = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_BELL_RATIOS = np.array([1.0, 2.76, 5.4, 8.93])
_BELL_AMPS = np.array([1.0, 0.55, 0.35, 0.2])


def sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """Draw instrument, tempo, register, key and texture (uniformly: balanced classes)."""
    tempo = TEMPOS[int(rng.integers(3))]
    return {
        "instrument": INSTRUMENTS[int(rng.integers(len(INSTRUMENTS)))],
        "tempo": tempo,
        "bpm": int(rng.integers(*_BPM[tempo])),
        "register": REGISTERS[int(rng.integers(3))],
        "key": NOTE_NAMES[int(rng.integers(12))],
        "mode": MODES[int(rng.integers(2))],
        "texture": TEXTURES[int(rng.integers(3))],
        "space": SPACES[int(rng.integers(2))],
    }


def _harmonics(freq: float, sample_rate: int, weights: np.ndarray) -> np.ndarray:
    """Harmonic amplitudes cut at Nyquist, so no partial aliases."""
    count = int(min(len(weights), 0.45 * sample_rate / freq))
    return weights[: max(count, 1)]


def _note(
    instrument: str, freq: float, length: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """One note of ``length`` samples (including its release), in single precision."""
    n = np.arange(1, 41, dtype=float)
    t = (np.arange(length) / sample_rate).astype(np.float32)
    phase = freq * (np.arange(length) / sample_rate) + rng.uniform()
    if instrument in ("piano", "guitar"):
        if instrument == "piano":
            bright, dull = 1.0 / n**1.1, 1.0 / n**2.5
            taus = (0.12, 0.9 * (220.0 / freq) ** 0.3)
        else:
            pluck = rng.uniform(0.12, 0.22)
            bright = np.abs(np.sin(np.pi * n * pluck)) / n**0.9
            dull = 1.0 / n**2.2
            taus = (0.05, 0.45 * (220.0 / freq) ** 0.3)
        tables = [dsp.wavetable(_harmonics(freq, sample_rate, w)) for w in (bright, dull)]
        fast, slow = dsp.lookup_many(tables, phase)
        out = fast * np.exp(-t / np.float32(taus[0])) + slow * np.exp(-t / np.float32(taus[1]))
        clicks = min(length, 80)
        out[:clicks] += 0.15 * rng.standard_normal(clicks) * np.exp(-np.arange(clicks) / 12.0)
        return dsp.fade(out, sample_rate, 0.003, 0.04)
    if instrument == "bell":
        ratios = _BELL_RATIOS * (1.0 + rng.uniform(-0.004, 0.004, len(_BELL_RATIOS)))
        keep = ratios * freq < 0.45 * sample_rate
        out = np.zeros(length, dtype=np.float32)
        for ratio, amp in zip(ratios[keep], _BELL_AMPS[keep], strict=True):
            decay = np.exp(-t / np.float32(1.4 / ratio**0.7))
            out += np.float32(amp) * np.sin((2 * np.pi * ratio * freq) * t) * decay
        return dsp.fade(out, sample_rate, 0.002, 0.05)
    depth = {"organ": 0.0, "flute": 0.005, "strings": 0.007}[instrument]
    if depth:
        rate = rng.uniform(4.8, 6.0)
        wobble = np.sin(2 * np.pi * rate * t) * np.minimum(t / 0.25, 1.0)
        phase += depth * freq * np.cumsum(wobble) / sample_rate
    if instrument == "organ":
        weights = np.array([1.0, 0.7, 0.5, 0.45, 0.05, 0.35, 0.03, 0.3, 0.02, 0.15])
        env = dsp.adsr(length, sample_rate, 0.008, 0.1, 0.9, 0.04)
        env *= 1.0 + 0.08 * np.sin(2 * np.pi * 6.5 * t)
    elif instrument == "flute":
        weights = np.array([1.0, 0.22, 0.08, 0.03])
        env = dsp.adsr(length, sample_rate, 0.07, 0.2, 0.85, 0.08)
    else:
        weights = 1.0 / n * np.exp(-n / 18.0)
        env = dsp.adsr(length, sample_rate, 0.12, 0.3, 0.9, 0.15)
    out = dsp.lookup(dsp.wavetable(_harmonics(freq, sample_rate, weights)), phase) * env
    if instrument == "flute":
        out += 0.04 * rng.standard_normal(length, dtype=np.float32) * env
    return out


def _note_events(
    attrs: dict[str, Any], duration: float, rng: np.random.Generator
) -> list[tuple[float, float, list[int]]]:
    """(onset s, length s, MIDI pitches) following the texture, key and tempo."""
    beat = 60.0 / attrs["bpm"]
    scale = _SCALE[attrs["mode"]]
    root = _REGISTER_ROOT[attrs["register"]] + NOTE_NAMES.index(attrs["key"])

    def pitch_of(degree: int) -> int:
        return root + 12 * (degree // 7) + scale[degree % 7]

    events: list[tuple[float, float, list[int]]] = []
    t, degree = rng.uniform(0.0, 0.2), int(rng.integers(0, 5))
    progression = [0, 3, 4, 0, 5, 3, 4, 4]
    step = 0
    while t < duration - 0.1:
        if attrs["texture"] == "melody":
            beats = float(rng.choice([0.5, 1.0, 1.0, 1.0, 2.0]))
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 1, 1, 2, 0]), 0, 9))
            events.append((t, beats * beat * 0.95, [pitch_of(degree)]))
        elif attrs["texture"] == "chords":
            beats = 2.0 if rng.uniform() < 0.6 else 1.0
            base = progression[step % len(progression)]
            events.append((t, beats * beat * 0.98, [pitch_of(base + k) for k in (0, 2, 4)]))
        else:
            beats = 0.5
            base = progression[(step // 4) % len(progression)]
            events.append((t, beat * 0.9, [pitch_of(base + (0, 2, 4, 7)[step % 4])]))
        t += beats * beat
        step += 1
    return events


def synthesize(
    attrs: dict[str, Any], num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Render the music clip; adds the ``notes`` count to ``attrs``."""
    out = np.zeros(num_samples, dtype=np.float32)
    events = _note_events(attrs, num_samples / sample_rate, rng)
    tail = {"piano": 0.6, "guitar": 0.4, "bell": 1.2}.get(attrs["instrument"], 0.0)
    for onset, length, pitches in events:
        velocity = rng.uniform(0.6, 1.0) / np.sqrt(len(pitches))
        for pitch in pitches:
            freq = 440.0 * 2 ** ((pitch - 69) / 12)
            samples = int((length + tail) * sample_rate)
            note = _note(attrs["instrument"], freq, samples, sample_rate, rng)
            dsp.place(out, np.float32(velocity) * note, int(onset * sample_rate))
    attrs["notes"] = sum(len(p) for _, _, p in events)
    decay = rng.uniform(0.25, 0.6) if attrs["space"] == "reverberant" else rng.uniform(0.05, 0.12)
    wet = rng.uniform(0.25, 0.4) if attrs["space"] == "reverberant" else 0.08
    ir_len = int(decay * 3 * sample_rate)
    ramp = np.arange(ir_len, dtype=np.float32) / np.float32(decay * sample_rate)
    impulse = rng.standard_normal(ir_len, dtype=np.float32) * np.exp(-ramp)
    size = dsp.fft_size(num_samples + ir_len)
    reverb = np.fft.irfft(np.fft.rfft(out, size) * np.fft.rfft(impulse, size), size)[:num_samples]
    return out + wet * reverb * dsp.rms(out) / dsp.rms(reverb)
