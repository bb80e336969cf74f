"""Speech benchmarks: VoxCeleb1 speaker identification, CREMA-D emotion, Speech Commands v2
keyword spotting and VoxLingua107 language identification.

CREMA-D and VoxLingua107 ship no split file; the splits chosen here are in the loaders'
docstrings and the alp-eval README.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from alp_core.errors import ConfigError, DataError
from alp_eval.datasets.base import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_MISSING,
    Benchmark,
    BenchmarkClip,
    Listed,
    fold_protocol,
    read_lines,
    require_dir,
    require_file,
    resolve_clips,
    split_protocol,
    unknown_label,
)

__all__ = ["load_crema_d", "load_speech_commands", "load_voxceleb1", "load_voxlingua107"]

VOXCELEB_SPLITS = {"1": "train", "2": "val", "3": "test"}
CREMA_EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy",
                  "NEU": "neutral", "SAD": "sad"}
CREMA_LEVELS = ("LO", "MD", "HI", "XX", "X")  # 1040_ITH_SAD_X.wav: one letter in the release
_CREMA_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{1,2})\.wav$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _audio_files(folder: Path) -> list[os.DirEntry]:
    """The audio files directly inside ``folder``, sorted by name (hidden files left out)."""
    with os.scandir(folder) as entries:
        found = [e for e in entries if not e.name.startswith(".") and e.is_file()
                 and os.path.splitext(e.name)[1].lower() in AUDIO_EXTENSIONS]
    return sorted(found, key=lambda e: e.name)


def load_voxceleb1(root: str | os.PathLike, *,
                   audio_dirs: tuple[str, ...] = ("wav", "vox1_dev_wav/wav", "vox1_test_wav/wav"),
                   max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """VoxCeleb1 speaker identification (1,251 speakers): ``iden_split.txt`` (lines
    ``<1|2|3> idXXXXX/<video>/<utt>.wav``; 1 train, 2 val, 3 test) and the audio at
    ``wav/idXXXXX/<video>/<utt>.wav`` (or under ``vox1_dev_wav/wav`` and ``vox1_test_wav/wav``
    as the two archives unpack; the first folder holding a file wins). Label: the speaker id."""
    name, root = "VoxCeleb1", Path(root).absolute()
    split_path = require_file(name, root, "iden_split.txt")
    folders = [root / d for d in audio_dirs if (root / d).is_dir()]
    if not folders:
        require_dir(name, root, audio_dirs[0])
    listed, speakers = [], set()
    for line, text in read_lines(name, split_path):
        parts = text.split()
        if len(parts) != 2 or parts[0] not in VOXCELEB_SPLITS or parts[1].count("/") != 2:
            raise DataError(f"{name}: {split_path}:{line}: {text!r}; accepted: '<1|2|3> "
                            "idXXXXX/<video>/<utt>.wav' (1 train, 2 val, 3 test)")
        rel = parts[1]
        path = next((str(f / rel) for f in folders if (f / rel).is_file()), str(folders[0] / rel))
        speaker = rel.split("/")[0]
        speakers.add(speaker)
        listed.append(Listed(BenchmarkClip(
            id=os.path.splitext(rel)[0], path=path, labels=(speaker,),
            fold_or_split=VOXCELEB_SPLITS[parts[0]]), f"iden_split.txt:{line}"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="voxceleb1", domain="speech", task="multiclass",
                     classes=tuple(sorted(speakers)), clips=clips, protocol=split_protocol(),
                     protocol_name="train/val/test from iden_split.txt (codes 1/2/3)",
                     root=str(root), skipped=skipped, listed=len(listed))


def load_crema_d(root: str | os.PathLike, *, folds: int = 5,
                 max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """CREMA-D emotion (6 classes: anger, disgust, fear, happy, neutral, sad):
    ``AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav`` (e.g. ``1001_DFA_ANG_XX.wav``); the
    label is the intended emotion of the file name. No official split: ``folds``
    speaker-disjoint folds, the actor at position i of the sorted actor ids going to fold
    ``i % folds + 1`` (91 actors, 5 folds: 19/18/18/18/18 actors), evaluated by
    leave-one-fold-out cross-validation. Header-only files (1076_MTI_SAD_XX.wav in the
    release) are skipped; ``1040_ITH_SAD_X.wav`` (a one-letter level, renamed upstream only
    in 2022, so still in most copies) is read."""
    name, root = "CREMA-D", Path(root).absolute()
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"{name}: folds={folds!r}; accepted: an integer >= 2")
    audio = require_dir(name, root, "AudioWAV")
    parsed = []
    for entry in _audio_files(audio):
        match = _CREMA_NAME.match(entry.name)
        if not match:
            raise DataError(f"{name}: {entry.path}: cannot read the file name; accepted: "
                            "<actor>_<sentence>_<emotion>_<level>.wav, e.g. 1001_DFA_ANG_XX.wav")
        actor, _, emotion, level = match.groups()
        if emotion not in CREMA_EMOTIONS:
            raise unknown_label(name, entry.path, "name", emotion, list(CREMA_EMOTIONS))
        if level not in CREMA_LEVELS:
            raise DataError(f"{name}: {entry.path}: level {level!r}; accepted: "
                            f"{', '.join(CREMA_LEVELS)}")
        parsed.append((entry, actor, CREMA_EMOTIONS[emotion]))
    actors = sorted({actor for _, actor, _ in parsed})
    if len(actors) < folds:
        raise DataError(f"{name}: {len(actors)} actors in {audio}, fewer than folds={folds}")
    fold_of = {actor: str(i % folds + 1) for i, actor in enumerate(actors)}
    listed = [Listed(BenchmarkClip(
        id=os.path.splitext(entry.name)[0], path=entry.path, labels=(emotion,),
        fold_or_split=fold_of[actor]), f"AudioWAV/{entry.name}")
        for entry, actor, emotion in parsed]
    clips, skipped = resolve_clips(name, listed, max_missing)
    fold_names = tuple(str(k) for k in range(1, folds + 1))
    return Benchmark(
        name="crema-d", domain="speech", task="multiclass",
        classes=tuple(CREMA_EMOTIONS.values()), clips=clips,
        protocol=fold_protocol(fold_names),
        protocol_name=f"{folds}-fold speaker-disjoint cross-validation (sorted actor i -> "
                      f"fold i % {folds} + 1)",
        root=str(root), skipped=skipped, listed=len(listed),
        notes=tuple(f"fold {k}: actors {', '.join(a for a in actors if fold_of[a] == k)}"
                    for k in fold_names))


def load_speech_commands(root: str | os.PathLike, *,
                         max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """Speech Commands v2 (35 words): one folder per word (``right/<speaker>_nohash_<n>.wav``)
    beside ``validation_list.txt`` and ``testing_list.txt`` (lines ``word/file.wav``).
    Listed files are val/test, every other file train; ``_background_noise_`` and other
    folders starting with ``_`` or ``.`` are not classes. The full 35-word task, no silence
    or unknown class."""
    name, root = "Speech Commands v2", Path(root).absolute()
    lists = {"val": require_file(name, root, "validation_list.txt"),
             "test": require_file(name, root, "testing_list.txt")}
    classes = tuple(sorted(d.name for d in root.iterdir()
                           if d.is_dir() and not d.name.startswith(("_", "."))))
    if not classes:
        raise DataError(f"{name}: no word folders under {root} (expected one folder per "
                        "keyword beside validation_list.txt)")
    split_of: dict[str, tuple[str, str]] = {}
    for split, path in lists.items():
        for line, rel in read_lines(name, path):
            word = rel.split("/")[0]
            if rel.count("/") != 1 or word not in classes:
                raise unknown_label(name, path, line, word, classes)
            where = f"{path.name}:{line}"
            if rel in split_of:
                raise DataError(f"{name}: {rel} is listed twice: {split_of[rel][1]} and {where}")
            split_of[rel] = (split, where)
    listed, present = [], set()
    for word in classes:
        for entry in _audio_files(root / word):
            rel = f"{word}/{entry.name}"
            present.add(rel)
            split, where = split_of.get(rel, ("train", f"{word}/"))
            listed.append(Listed(BenchmarkClip(
                id=os.path.splitext(rel)[0], path=entry.path, labels=(word,),
                fold_or_split=split), where))
    for rel, (split, where) in split_of.items():
        if rel not in present:
            listed.append(Listed(BenchmarkClip(
                id=os.path.splitext(rel)[0], path=str(root / rel), labels=(rel.split("/")[0],),
                fold_or_split=split), where))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="speech-commands-v2", domain="speech", task="multiclass",
                     classes=classes, clips=clips, protocol=split_protocol(),
                     protocol_name="train/val/test from validation_list.txt and "
                                   "testing_list.txt (the rest is train)",
                     root=str(root), skipped=skipped, listed=len(listed))


def load_voxlingua107(root: str | os.PathLike, *, dev_dir: str = "dev",
                      max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """VoxLingua107 language identification: the training set as one folder per language
    code (``en/*.wav``, ``ceb/*.wav``: each ``<code>.zip`` unpacked into ``root``) and the
    official development set (``dev.zip``: 1,609 clips, 33 languages) in ``dev/<code>/*.wav``.
    Classes: the training language folders (2-3 lowercase letters), sorted. Train on the
    training set, test on the dev set (the usual protocol; no validation split)."""
    name, root = "VoxLingua107", Path(root).absolute()
    dev = require_dir(name, root, dev_dir)
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()
                           and _LANGUAGE.match(d.name) and d.name != dev_dir))
    if not classes:
        raise DataError(f"{name}: expected one folder per language code (en/, ceb/, ...) "
                        f"beside {dev_dir}/ under {root}")
    listed = []
    for split, base, languages in (("train", root, classes),
                                   ("test", dev, sorted(d.name for d in dev.iterdir()
                                                        if d.is_dir()))):
        for lang in languages:
            if lang not in classes:
                raise unknown_label(name, base / lang, "folder", lang, classes)
            for entry in _audio_files(base / lang):
                listed.append(Listed(BenchmarkClip(
                    id=f"{split}/{lang}/{os.path.splitext(entry.name)[0]}", path=entry.path,
                    labels=(lang,), fold_or_split=split),
                    f"{dev_dir}/{lang}/" if split == "test" else f"{lang}/"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="voxlingua107", domain="speech", task="multiclass", classes=classes,
                     clips=clips, protocol=split_protocol(val=None),
                     protocol_name="train on the training set, test on the official dev set",
                     root=str(root), skipped=skipped, listed=len(listed))
