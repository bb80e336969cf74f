"""Speech-like clips: a source-filter voice speaking nonsense consonant-vowel syllables.

A glottal pulse train (per-speaker pitch with jitter) excites formant resonances scaled by the
speaker's vocal-tract length; consonants add shaped noise bursts. Speaking rate sets the syllable
rate and pause lengths; intonation sets the pitch contour across each phrase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alp_data.demo import dsp


@dataclass(frozen=True)
class Speaker:
    """A fixed synthetic voice; its traits are what captions say about it."""

    name: str
    gender: str  # male / female
    pitch: str  # low / high (within the gender's range)
    timbre: str  # resonant (long vocal tract) / thin (short vocal tract)
    f0: float
    formant_scale: float
    breathiness: float
    jitter: float


def _speakers() -> tuple[Speaker, ...]:
    voices = []
    genders = (("male", 100.0, 1.0, 0.04), ("female", 190.0, 1.17, 0.08))
    for gender, base_f0, base_scale, breath in genders:
        for pitch, pitch_mul in (("low", 0.88), ("high", 1.22)):
            for timbre, tract in (("resonant", 0.9), ("thin", 1.1)):
                index = len(voices) + 1
                voices.append(
                    Speaker(
                        name=f"spk{index:02d}",
                        gender=gender,
                        pitch=pitch,
                        timbre=timbre,
                        f0=base_f0 * pitch_mul * (1.0 + 0.015 * (index % 3)),
                        formant_scale=base_scale * tract,
                        breathiness=breath * (1.5 if timbre == "thin" else 1.0),
                        jitter=0.006 + 0.002 * (index % 4),
                    )
                )
    return tuple(voices)


SPEAKERS: tuple[Speaker, ...] = _speakers()
SPEAKER_BY_NAME = {s.name: s for s in SPEAKERS}
SPEAKING_RATES = ("slow", "normal", "fast")
INTONATIONS = ("rising", "falling", "flat")
ROOMS = ("quiet", "noisy")

_SYLLABLES_PER_SECOND = {"slow": 2.6, "normal": 4.0, "fast": 5.8}
_PAUSE_SECONDS = {"slow": (0.35, 0.6), "normal": (0.2, 0.4), "fast": (0.1, 0.22)}

# Adult-male reference formants F1-F3 (Hz); F4 is set from the scale.
_VOWELS = {
    "a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010),
    "o": (570, 840, 2410), "u": (300, 870, 2240), "schwa": (500, 1500, 2500),
}
# kind, noise band (Hz) for bursts/frication, formants for voiced consonants, voicing in closure.
_CONSONANTS: dict[str, tuple[str, tuple[float, float], tuple[int, int, int], float]] = {
    "p": ("plosive", (400, 1600), (400, 1000, 2300), 0.0),
    "t": ("plosive", (2800, 6500), (400, 1700, 2600), 0.0),
    "k": ("plosive", (1400, 3200), (400, 1900, 2400), 0.0),
    "b": ("plosive", (300, 1400), (300, 900, 2200), 0.15),
    "d": ("plosive", (2500, 5500), (350, 1700, 2600), 0.15),
    "s": ("fricative", (4000, 7800), (400, 1700, 2600), 0.0),
    "sh": ("fricative", (2000, 5000), (400, 1900, 2500), 0.0),
    "f": ("fricative", (1200, 7500), (400, 1100, 2300), 0.0),
    "m": ("nasal", (0, 0), (250, 1100, 2300), 0.0),
    "n": ("nasal", (0, 0), (250, 1600, 2600), 0.0),
    "l": ("liquid", (0, 0), (360, 1300, 2700), 0.0),
    "r": ("liquid", (0, 0), (420, 1300, 1650), 0.0),
}


def sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """Draw the clip's speaker, speaking rate, intonation and room (uniformly: balanced)."""
    speaker = SPEAKERS[int(rng.integers(len(SPEAKERS)))]
    return {
        "speaker": speaker.name,
        "gender": speaker.gender,
        "pitch": speaker.pitch,
        "timbre": speaker.timbre,
        "speaking_rate": SPEAKING_RATES[int(rng.integers(3))],
        "intonation": INTONATIONS[int(rng.integers(3))],
        "room": ROOMS[int(rng.integers(2))],
    }


def _contour(kind: str, u: np.ndarray) -> np.ndarray:
    """Pitch multiplier over a phrase's normalised time ``u`` in [0, 1]."""
    if kind == "rising":
        return 0.9 + 0.42 * u**1.5
    if kind == "falling":
        return 1.2 - 0.4 * u
    return 1.0 + 0.012 * np.sin(2 * np.pi * 1.3 * u)


def synthesize(
    attrs: dict[str, Any], num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Render the speech-like clip; adds ``syllables``/``phrases`` counts to ``attrs``."""
    speaker = SPEAKER_BY_NAME[attrs["speaker"]]
    rate = attrs["speaking_rate"]
    frames = dsp.num_frames(num_samples)
    times = dsp.frame_times(num_samples, sample_rate)
    duration = num_samples / sample_rate
    voice_amp = np.zeros(frames)
    noise_amp = np.zeros(frames)
    noise_lo = np.full(frames, 1000.0)
    noise_hi = np.full(frames, 4000.0)
    formants = np.tile(np.array(_VOWELS["schwa"], dtype=float), (frames, 1))
    contour = np.ones(frames)

    def span(a: float, b: float) -> slice:
        return slice(int(np.searchsorted(times, a)), int(np.searchsorted(times, b)))

    syllable_rate = _SYLLABLES_PER_SECOND[rate] * rng.uniform(0.92, 1.08)
    t = rng.uniform(0.05, 0.25)
    syllables = phrases = 0
    while t < duration - 0.35:
        phrase_start, phrase_len = t, int(rng.integers(3, 8))
        for _ in range(phrase_len):
            length = rng.uniform(0.8, 1.2) / syllable_rate
            if t + length > duration - 0.05:
                break
            cons_name = list(_CONSONANTS)[int(rng.integers(len(_CONSONANTS)))]
            kind, (lo, hi), locus, closure_voice = _CONSONANTS[cons_name]
            vowel = _VOWELS[list(_VOWELS)[int(rng.integers(len(_VOWELS)))]]
            stress = rng.uniform(0.65, 1.0)
            c_end = t + length * rng.uniform(0.22, 0.34)
            cons = span(t, c_end)
            formants[cons] = locus
            if kind == "plosive":
                burst = c_end - 0.018
                voice_amp[span(t, burst)] = closure_voice
                noise_amp[span(burst, c_end)] = 0.9 * stress
                noise_lo[cons], noise_hi[cons] = lo, hi
            elif kind == "fricative":
                noise_amp[cons] = (0.5 if cons_name != "f" else 0.25) * stress
                noise_lo[cons], noise_hi[cons] = lo, hi
            else:
                voice_amp[cons] = (0.35 if kind == "nasal" else 0.6) * stress
            vow = span(c_end, t + length * 0.92)
            formants[vow] = vowel
            voice_amp[vow] = stress
            t += length
            syllables += 1
        phrase = span(phrase_start, t)
        count = phrase.stop - phrase.start
        if count > 0:
            contour[phrase] = _contour(attrs["intonation"], np.linspace(0.0, 1.0, count))
            phrases += 1
        t += rng.uniform(*_PAUSE_SECONDS[rate])
    attrs["syllables"], attrs["phrases"] = syllables, phrases

    kernel = np.hanning(7)[1:-1] / np.hanning(7)[1:-1].sum()
    formants = np.stack([np.convolve(formants[:, k], kernel, "same") for k in range(3)], axis=1)
    voice_amp = np.convolve(voice_amp, kernel[1:-1] / kernel[1:-1].sum(), "same")
    scale = speaker.formant_scale
    f4 = np.full((frames, 1), 3500.0)
    formants = (np.concatenate([formants, f4], axis=1) * scale).astype(np.float32)
    bandwidths = (np.array([70.0, 100.0, 140.0, 200.0]) * scale).astype(np.float32)
    freqs = dsp.rfft_freqs(sample_rate).astype(np.float32)
    peaks = dsp.resonance(freqs[None, None, :], formants[:, :, None], bandwidths[None, :, None])
    weights = np.array([1.0, 0.7, 0.4, 0.22], dtype=np.float32)
    vocal_tract = np.einsum("fkb,k->fb", peaks, weights) / (1.0 + freqs / 250.0)
    lo, hi = noise_lo.astype(np.float32)[:, None], noise_hi.astype(np.float32)[:, None]
    noise_shape = dsp.band(freqs[None, :], lo, hi, slope=3.0)

    sample_t = np.arange(num_samples) / sample_rate
    drift = 1.0 + 0.025 * dsp.smooth_random(num_samples, sample_rate, 3.0, rng)
    f0 = speaker.f0 * np.interp(sample_t, times, contour) * drift
    f0 *= 1.0 + speaker.jitter * rng.standard_normal(num_samples, dtype=np.float32)
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    pulse_spec = dsp.stft(pulses)
    noise_spec = dsp.stft(rng.standard_normal(num_samples, dtype=np.float32))
    voice_env = vocal_tract * voice_amp.astype(np.float32)[:, None]
    voice = (pulse_spec + np.float32(speaker.breathiness) * noise_spec) * voice_env
    voice += noise_spec * (noise_shape * (0.08 * noise_amp.astype(np.float32)[:, None]))
    # The room noise reuses the noise spectrum; its level follows Parseval on the spectra.
    room = noise_spec * dsp.pink_tilt(freqs, 0.7).astype(np.float32)
    snr_db = rng.uniform(28.0, 36.0) if attrs["room"] == "quiet" else rng.uniform(10.0, 16.0)
    gain = np.sqrt(np.sum(np.abs(voice) ** 2) / np.sum(np.abs(room) ** 2)) * 10 ** (-snr_db / 20)
    return dsp.istft(voice + gain * room, num_samples)
