"""Captions in three styles (tag list, short sentence, detailed description) from true attributes.

Each attribute is worded with a seeded choice among synonyms, so the text varies while always
naming every probe attribute: contrastive or captioning pretraining can only learn what the
captions say. :data:`KEYWORDS` lists the words that count as mentioning each probe class.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from alp_data.demo.speech import SPEAKER_BY_NAME

CAPTION_STYLES = ("tags", "short", "detailed")

_DOMAIN_WORDS = {
    "speech": ("speech", "speak", "talk", "voice", "spoken"),
    "music": ("music", "melod", "play", "tune", "piece"),
    "environment": ("sound", "noise", "recording", "ambien"),
}
_SPEAKER_TRAITS = {
    "male": ("male", "man"), "female": ("female", "woman"),
    "low": ("low-pitched", "deep", "low pitch"), "high": ("high-pitched", "high pitch"),
    "resonant": ("resonant", "full", "rich"), "thin": ("thin", "reedy"),
}
KEYWORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "domain": _DOMAIN_WORDS,
    "speaking_rate": {
        "slow": ("slow", "unhurried"), "normal": ("normal", "moderate", "conversational"),
        "fast": ("fast", "quick", "rapid", "hurried"),
    },
    "intonation": {
        "rising": ("rising", "rises", "upward"), "falling": ("falling", "falls", "downward"),
        "flat": ("flat", "monotone", "level"),
    },
    "instrument": {
        "piano": ("piano",), "guitar": ("guitar",), "organ": ("organ",), "flute": ("flute",),
        "bell": ("bell", "chime"), "strings": ("strings", "string section", "violin"),
    },
    "tempo": {
        "slow": ("slow", "leisurely", "unhurried"), "medium": ("moderate", "medium", "mid-tempo"),
        "fast": ("fast", "quick", "brisk", "upbeat", "lively"),
    },
    "event": {
        "dog_bark": ("dog", "bark"), "siren": ("siren",), "rain": ("rain",),
        "door_knock": ("knock",), "engine": ("engine", "motor"), "bird_chirp": ("bird", "chirp"),
        "footsteps": ("footstep",), "glass_clink": ("glass", "clink"),
        "alarm_beep": ("beep", "alarm"), "thunder": ("thunder",),
    },
    "background": {
        "quiet": ("quiet", "silen", "still"), "street": ("street", "traffic", "city"),
        "babble": ("chatter", "crowd", "babble", "murmur"), "wind": ("wind", "gust"),
    },
}


def _names(text: str, word: str) -> bool:
    """``word`` (or a stem: ``silen``) at the start of a word of ``text``: ``male`` is not
    in ``female``, nor ``hurried`` in ``unhurriedly``."""
    return re.search(rf"\b{re.escape(word)}", text) is not None


def caption_mentions(caption: str, task: str, value: str) -> bool:
    """Whether ``caption`` names class ``value`` of probe ``task`` (a speaker by its traits)."""
    text = caption.lower()
    if task == "speaker":
        s = SPEAKER_BY_NAME[value]
        groups = [_SPEAKER_TRAITS[s.gender], _SPEAKER_TRAITS[s.pitch], _SPEAKER_TRAITS[s.timbre]]
        return all(any(_names(text, word) for word in group) for group in groups)
    return any(_names(text, word) for word in KEYWORDS[task][value])


class _Words:
    """Seeded picks among synonyms."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, *options: str) -> str:
        return options[int(self.rng.integers(len(options)))]


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[0].upper() + text[1:]


def _tags(rng: np.random.Generator, first: str, tags: list[str]) -> str:
    order = rng.permutation(len(tags))
    return ", ".join([first] + [tags[i] for i in order])


_COUNTS = {1: "once", 2: "twice", 3: "three times", 4: "four times", 5: "five times"}
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _number(value: int) -> str:
    return _NUMBERS[value] if 0 <= value < len(_NUMBERS) else str(value)


def _speech(a: dict[str, Any], w: _Words, rng: np.random.Generator) -> list[str]:
    s = SPEAKER_BY_NAME[a["speaker"]]
    gender = s.gender
    noun = w("man", "male speaker") if s.gender == "male" else w("woman", "female speaker")
    pitch = w("low-pitched", "deep") if s.pitch == "low" else "high-pitched"
    timbre = w("resonant", "full", "rich") if s.timbre == "resonant" else w("thin", "reedy")
    rate_adv = {
        "slow": w("slowly", "at a slow pace", "unhurriedly"),
        "normal": w("at a normal pace", "at a moderate pace", "at a conversational pace"),
        "fast": w("quickly", "rapidly", "at a fast pace", "hurriedly"),
    }[a["speaking_rate"]]
    rate_tag = {"slow": "slow", "normal": w("normal pace", "moderate pace"),
                "fast": w("fast", "quick")}[a["speaking_rate"]]
    tone = {
        "rising": w("rising intonation", "a rising tone", "an upward inflection"),
        "falling": w("falling intonation", "a falling tone", "a downward inflection"),
        "flat": w("flat intonation", "a monotone delivery", "a level tone"),
    }[a["intonation"]]
    tone_tag = tone.split(" ", 1)[1] if tone.startswith(("a ", "an ")) else tone
    room = w("in a quiet room", "with a clean background") if a["room"] == "quiet" else w(
        "with background noise", "in a noisy room")
    contour = {
        "rising": "the pitch rises toward the end of each phrase",
        "falling": "the pitch falls toward the end of each phrase",
        "flat": "the pitch stays flat and monotone",
    }[a["intonation"]]
    tags = _tags(rng, w("speech", "speaking voice"),
                 [f"{gender} voice", f"{pitch}", timbre, rate_tag, tone_tag])
    verb = w("speaks", "talks")
    short = _sentence(f"a {noun} with a {pitch}, {timbre} voice {verb} {rate_adv} with {tone}.")
    detailed = _sentence(
        f"a {gender} speaker with a {pitch}, {timbre} voice {verb} {rate_adv} in "
        f"{_number(a['phrases'])} short phrases of nonsense syllables; {contour}, {room}."
    )
    return [tags, short, detailed]


_PLURAL = ("bells", "chimes", "strings", "bowed strings")


def _article(phrase: str) -> str:
    if phrase in _PLURAL:
        return phrase
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _music(a: dict[str, Any], w: _Words, rng: np.random.Generator) -> list[str]:
    inst = {
        "piano": w("piano", "acoustic piano", "grand piano"),
        "guitar": w("guitar", "plucked guitar", "acoustic guitar"),
        "organ": w("organ", "electric organ", "drawbar organ"),
        "flute": w("flute", "breathy flute"),
        "bell": w("bells", "chimes", "bell"),
        "strings": w("strings", "bowed strings", "string section"),
    }[a["instrument"]]
    tempo = {
        "slow": w("slow tempo", "leisurely tempo", "slow pace"),
        "medium": w("moderate tempo", "medium tempo", "moderate pace"),
        "fast": w("fast tempo", "brisk tempo", "lively, upbeat pace", "quick tempo"),
    }[a["tempo"]]
    register = {"low": w("low register", "bass register", "lower range"),
                "mid": w("middle register", "mid-range"),
                "high": w("high register", "treble register", "upper range")}[a["register"]]
    texture = {"melody": w("a simple melody", "a single-line melody"),
               "chords": w("chords", "a chord progression", "block chords"),
               "arpeggio": w("arpeggios", "an arpeggiated pattern")}[a["texture"]]
    space = w("dry", "close") if a["space"] == "dry" else w("reverberant", "roomy")
    key = f"{a['key']} {a['mode']}"
    tags = _tags(rng, "music", [inst, tempo, register, key, texture.split()[-1]])
    short = _sentence(f"{_article(inst)} playing {texture} at a {tempo} in the {register}.")
    detailed = _sentence(
        f"a {space} recording of {_article(inst)} playing {texture} in {key}, in the "
        f"{register}, at a {tempo} of about {a['bpm']} beats per minute, "
        f"{_number(a['notes'])} notes in all."
    )
    return [tags, short, detailed]


_EVENT_TEXT = {
    "dog_bark": ("dog barking", "a dog barks{n}", "a dog barking{n} in short, rough yelps"),
    "siren": ("siren", "a siren wails", "a wailing siren sweeping up and down in pitch"),
    "rain": ("rain", "rain falls steadily", "steady rain with droplets pattering"),
    "door_knock": ("knocking", "someone knocks on a door{n}", "someone knocking on a door{n}"),
    "engine": ("engine hum", "an engine idles", "a low engine hum with a throbbing rumble"),
    "bird_chirp": ("bird chirping", "a bird chirps{n}", "a small bird chirping{n}"),
    "footsteps": ("footsteps", "footsteps walk by", "footsteps at a steady walking pace"),
    "glass_clink": ("glass clinking", "glasses clink{n}", "glasses clinking{n} with a bright ring"),
    "alarm_beep": ("alarm beeping", "an alarm beeps", "an electronic alarm beeping repeatedly"),
    "thunder": ("thunder", "thunder rumbles", "a crack of thunder followed by a long rumble"),
}
_BACKGROUND_TEXT = {
    "quiet": (("quiet background", "silence"), ("in a quiet place", "with silence around it")),
    "street": (("street noise", "traffic"), ("over traffic noise", "on a busy city street")),
    "babble": (("crowd chatter", "babble"), ("over crowd chatter", "amid a murmuring crowd")),
    "wind": (("wind", "windy"), ("in the wind", "with gusts of wind")),
}


def _environment(a: dict[str, Any], w: _Words, rng: np.random.Generator) -> list[str]:
    tag, short_text, long_text = _EVENT_TEXT[a["event"]]
    count = a.get("count")
    times = f" {_COUNTS[count]}" if count in _COUNTS else (" several times" if count else "")
    bg_tags, bg_phrases = _BACKGROUND_TEXT[a["background"]]
    tags = _tags(rng, w("sound effects", "environmental sound"), [tag, w(*bg_tags)])
    short = _sentence(f"{short_text.format(n=times)} {w(*bg_phrases)}.")
    detailed = _sentence(
        f"{w('a recording of', 'the sound of', 'a field recording of')} "
        f"{long_text.format(n=times)}, {w(*bg_phrases)}."
    )
    return [tags, short, detailed]


def make_captions(domain: str, attrs: dict[str, Any], rng: np.random.Generator) -> list[str]:
    """The clip's captions, one per style in :data:`CAPTION_STYLES` order."""
    builder = {"speech": _speech, "music": _music, "environment": _environment}[domain]
    return builder(attrs, _Words(rng), rng)
