"""Music benchmarks: GTZAN genre, NSynth instrument family and pitch, MagnaTagATune tagging."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

from alp_core.errors import ConfigError, DataError
from alp_eval.datasets.base import (
    DEFAULT_MAX_MISSING,
    Benchmark,
    BenchmarkClip,
    Listed,
    fold_protocol,
    read_lines,
    read_table,
    require_dir,
    require_file,
    resolve_clips,
    split_protocol,
    unknown_label,
)

__all__ = ["load_gtzan", "load_magnatagatune", "load_nsynth", "load_nsynth_family",
           "load_nsynth_pitch"]

GTZAN_GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
                "reggae", "rock")
GTZAN_AUDIO_DIRS = ("genres", "genres_original", "Data/genres_original")
GTZAN_LISTS = {"train": "train_filtered.txt", "val": "valid_filtered.txt",
               "test": "test_filtered.txt"}
_GTZAN_NAME = re.compile(r"^([a-z]+)\.(\d{5})\.(wav|au)$")
NSYNTH_FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed",
                   "string", "synth_lead", "vocal")
NSYNTH_SPLITS = {"train": "nsynth-train", "val": "nsynth-valid", "test": "nsynth-test"}
MTT_SPLITS = {**dict.fromkeys("0123456789ab", "train"), "c": "val", **dict.fromkeys("def", "test")}


def _gtzan_files(name: str, root: Path, audio_dir: str) -> dict[str, tuple[str, str]]:
    """``genre.000NN`` -> (path, genre) of every audio file in the genre folders."""
    audio = require_dir(name, root, audio_dir)
    found: dict[str, tuple[str, str]] = {}
    for genre in GTZAN_GENRES:
        folder = require_dir(name, root, f"{audio_dir}/{genre}")
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda e: e.name)
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            match = _GTZAN_NAME.match(entry.name)
            if not match or match.group(1) != genre:
                raise DataError(f"{name}: {entry.path}: accepted file names in {genre}/: "
                                f"{genre}.000NN.wav (or .au)")
            found[f"{genre}.{match.group(2)}"] = (entry.path, genre)
    extra = sorted(d.name for d in audio.iterdir() if d.is_dir() and d.name not in GTZAN_GENRES
                   and not d.name.startswith((".", "_")))
    if extra:
        raise unknown_label(name, audio / extra[0], "folder", extra[0], GTZAN_GENRES)
    return found


def load_gtzan(root: str | os.PathLike, *, audio_dir: str | None = None,
               split_dir: str | None = None, max_missing: float = DEFAULT_MAX_MISSING
               ) -> Benchmark:
    """GTZAN genre (10 genres): ``genres/<genre>/<genre>.000NN.wav`` (or ``.au``; the folder
    may also be ``genres_original`` or ``Data/genres_original`` as in the Kaggle copy).

    With ``split_dir`` it reads the fault-filtered split of Kereliuk et al. (2015) —
    ``train_filtered.txt``, ``valid_filtered.txt``, ``test_filtered.txt`` with lines
    ``blues/blues.00029.wav`` (443/197/290 clips) — as train/val/test; clips in no list are
    left out. Without it: 10-fold cross-validation with clip ``NN`` in fold ``NN // 10 + 1``
    (contiguous numbers, which share artists more often, stay in one fold).
    """
    name, root = "GTZAN", Path(root).absolute()
    if audio_dir is None:
        audio_dir = next((d for d in GTZAN_AUDIO_DIRS if (root / d).is_dir()),
                         GTZAN_AUDIO_DIRS[0])
    audio = root / audio_dir
    files = _gtzan_files(name, root, audio_dir)
    listed: list[Listed] = []
    if split_dir is None:
        for stem, (path, genre) in files.items():
            fold = str(int(stem.split(".")[1]) // 10 + 1)
            listed.append(Listed(BenchmarkClip(stem, path, (genre,), fold), f"{genre}/"))
        folds = tuple(str(k) for k in range(1, 11))
        protocol, protocol_name = fold_protocol(folds), (
            "10-fold cross-validation, clip NN in fold NN // 10 + 1")
    else:
        seen: dict[str, str] = {}
        for split, file in GTZAN_LISTS.items():
            # an absolute split_dir (the lists come from another repository) stays absolute
            list_path = require_file(name, root, str(Path(split_dir or ".") / file))
            for line, rel in read_lines(name, list_path):
                stem = os.path.splitext(os.path.basename(rel))[0]
                genre = stem.split(".")[0]
                if genre not in GTZAN_GENRES:
                    raise unknown_label(name, list_path, line, genre, GTZAN_GENRES)
                if stem in seen:
                    raise DataError(f"{name}: {stem} is listed twice: {seen[stem]} and "
                                    f"{file}:{line}")
                seen[stem] = f"{file}:{line}"
                audio_path = files.get(stem, (str(audio / genre / f"{stem}.wav"), genre))[0]
                listed.append(Listed(BenchmarkClip(stem, audio_path, (genre,), split),
                                     f"{file}:{line}"))
        protocol, protocol_name = split_protocol(), (
            "train/val/test of the fault-filtered split (Kereliuk et al. 2015)")
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="gtzan", domain="music", task="multiclass", classes=GTZAN_GENRES,
                     clips=clips, protocol=protocol, protocol_name=protocol_name,
                     root=str(root), skipped=skipped, listed=len(listed))


def _json_line(text: str, key: str) -> int:
    """1-based line of ``"key"`` in a JSON text (for error messages only)."""
    at = text.find(json.dumps(key))
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def load_nsynth(root: str | os.PathLike, *, task: str = "family",
                pitch_range: tuple[int, int] = (21, 108),
                max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """NSynth: ``nsynth-{train,valid,test}/examples.json`` (an object keyed by note name with
    ``instrument_family_str`` and ``pitch``) and ``nsynth-<split>/audio/<note>.wav``; splits
    train/val/test. ``task="family"``: 11 instrument families (``synth_lead`` occurs in train
    only). ``task="pitch"``: MIDI pitches ``pitch_range`` inclusive as classes ("21".."108",
    the 88 piano keys, as HEAR's nsynth-pitch); notes outside it are left out (see notes)."""
    name, root = "NSynth", Path(root).absolute()
    if task not in ("family", "pitch"):
        raise ConfigError(f"{name}: task={task!r}; accepted: family, pitch")
    low, high = pitch_range
    classes = NSYNTH_FAMILIES if task == "family" else tuple(
        str(p) for p in range(low, high + 1))
    if not classes:
        raise ConfigError(f"{name}: pitch_range={pitch_range!r} is empty")
    listed, outside = [], 0
    for split, folder in NSYNTH_SPLITS.items():
        meta = require_file(name, root, f"{folder}/examples.json")
        audio = require_dir(name, root, f"{folder}/audio")
        text = meta.read_text(encoding="utf-8")
        try:
            examples = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{name}: {meta}:{err.lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(examples, dict):
            raise DataError(f"{name}: {meta}: accepted: an object keyed by note name")
        for note, info in examples.items():
            field = "instrument_family_str" if task == "family" else "pitch"
            if not isinstance(info, dict) or field not in info:
                raise DataError(f"{name}: {meta}:{_json_line(text, note)}: note {note!r} has "
                                f"no {field!r}")
            label = str(info[field])
            if task == "pitch" and label not in classes:
                outside += 1
                continue
            if label not in classes:
                raise unknown_label(name, meta, _json_line(text, note), label, classes)
            listed.append(Listed(BenchmarkClip(note, str(audio / f"{note}.wav"), (label,),
                                               split), f"{folder}/examples.json"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    notes = (f"{outside} notes outside pitch {low}..{high} left out",) if task == "pitch" else ()
    return Benchmark(name=f"nsynth-{task}", domain="music", task="multiclass", classes=classes,
                     clips=clips, protocol=split_protocol(),
                     protocol_name="train/val/test: nsynth-train, nsynth-valid, nsynth-test",
                     root=str(root), skipped=skipped, listed=len(listed), notes=notes)


def load_nsynth_family(root: str | os.PathLike, **options: object) -> Benchmark:
    """NSynth instrument family (11 classes); see :func:`load_nsynth`."""
    return load_nsynth(root, task="family", **options)  # type: ignore[arg-type]


def load_nsynth_pitch(root: str | os.PathLike, **options: object) -> Benchmark:
    """NSynth pitch (MIDI 21..108 by default); see :func:`load_nsynth`."""
    return load_nsynth(root, task="pitch", **options)  # type: ignore[arg-type]


def load_magnatagatune(root: str | os.PathLike, *, top_k: int = 50, audio_dir: str = "",
                       drop_unlabeled: bool = False,
                       max_missing: float = DEFAULT_MAX_MISSING) -> Benchmark:
    """MagnaTagATune tagging (multi-label): ``annotations_final.csv`` (tab-separated, quoted;
    columns clip_id, 188 tag columns of 0/1, mp3_path) and the mp3s at ``<mp3_path>``
    (``f/<name>.mp3``: folders ``0``..``f``) under ``root`` (or ``audio_dir``).

    Classes: the ``top_k`` most frequent tags over the whole file, most frequent first (ties in
    column order). Split by folder (Dieleman & Schrauwen 2014): 0-b train, c val, d-f test.
    Clips with none of the top tags stay (all-negative targets) unless ``drop_unlabeled``.
    The three 0-byte mp3s of the release are skipped.
    """
    name, root = "MagnaTagATune", Path(root).absolute()
    meta = require_file(name, root, "annotations_final.csv")
    audio = root / audio_dir
    if not any((audio / d).is_dir() for d in MTT_SPLITS):
        require_dir(name, root, f"{audio_dir}/0".lstrip("/"))
    rows = read_table(name, meta, ("clip_id", "mp3_path"), delimiter="\t")
    if not rows:
        raise DataError(f"{name}: {meta} has a header but no clips")
    tags = [column for column in rows[0][1] if column not in ("clip_id", "mp3_path")]
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= len(tags):
        raise ConfigError(f"{name}: top_k={top_k!r}; accepted: 1..{len(tags)} (the tag "
                          f"columns of {meta})")
    counts: Counter[str] = Counter()
    for line, r in rows:
        for tag in tags:
            if r[tag] not in ("0", "1"):
                raise DataError(f"{name}: {meta}:{line}: column {tag!r} is {r[tag]!r}; "
                                "accepted: 0 or 1")
            counts[tag] += r[tag] == "1"
    order = {tag: i for i, tag in enumerate(tags)}
    classes = tuple(sorted(tags, key=lambda t: (-counts[t], order[t]))[:top_k])
    listed, unlabeled = [], 0
    for line, r in rows:
        folder = r["mp3_path"].split("/")[0]
        if folder not in MTT_SPLITS or "/" not in r["mp3_path"]:
            raise DataError(f"{name}: {meta}:{line}: mp3_path {r['mp3_path']!r}; accepted: "
                            "<folder 0-f>/<name>.mp3")
        labels = tuple(t for t in classes if r[t] == "1")
        if not labels:
            unlabeled += 1
            if drop_unlabeled:
                continue
        listed.append(Listed(BenchmarkClip(r["clip_id"], str(audio / r["mp3_path"]), labels,
                                           MTT_SPLITS[folder]), f"annotations_final.csv:{line}"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    verb = "dropped" if drop_unlabeled else "kept (all-negative)"
    return Benchmark(name="magnatagatune", domain="music", task="multilabel", classes=classes,
                     clips=clips, protocol=split_protocol(),
                     protocol_name="train/val/test by mp3 folder: 0-b, c, d-f",
                     root=str(root), skipped=skipped, listed=len(listed),
                     notes=(f"top {top_k} of {len(tags)} tags", f"{unlabeled} clips with none "
                            f"of them {verb}"))
