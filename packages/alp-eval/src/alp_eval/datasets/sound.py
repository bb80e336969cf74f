"""Environmental-sound benchmarks: ESC-50, UrbanSound8K, FSD50K (multi-label) and VGGSound.

Each loader reads the label files of the official release as distributed, checks that the
audio they name exists, and returns a :class:`~alp_eval.datasets.base.Benchmark`. The exact
files expected where are in each loader's docstring and in the alp-eval README.
"""

from __future__ import annotations

import os
from pathlib import Path

from alp_core.errors import DataError
from alp_eval.datasets.base import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_MISSING,
    Benchmark,
    BenchmarkClip,
    Listed,
    fold_protocol,
    read_table,
    require_dir,
    require_file,
    resolve_clips,
    split_protocol,
    unknown_label,
)

__all__ = ["load_esc50", "load_fsd50k", "load_urbansound8k", "load_vggsound"]


def _int(bench: str, path: Path, line: int, column: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataError(f"{bench}: {path}:{line}: column {column!r} is {value!r}; accepted: "
                        "an integer") from None


def _fold(bench: str, path: Path, line: int, value: str, folds: tuple[str, ...]) -> str:
    if value not in folds:
        raise DataError(f"{bench}: {path}:{line}: fold {value!r}; accepted: "
                        f"{', '.join(folds)}")
    return value


def _indexed_classes(bench: str, path: Path, pairs: list[tuple[int, int, str]]
                     ) -> tuple[str, ...]:
    """Class names ordered by their integer id; one id naming two classes is an error."""
    by_id: dict[int, tuple[str, int]] = {}
    for line, index, name in pairs:
        first = by_id.setdefault(index, (name, line))
        if first[0] != name:
            raise DataError(f"{bench}: {path}:{line}: class id {index} is {name!r} here but "
                            f"{first[0]!r} on line {first[1]}")
    classes = tuple(by_id[i][0] for i in sorted(by_id))
    if len(set(classes)) != len(classes):
        raise DataError(f"{bench}: {path}: one class name has several ids ({classes})")
    return classes


def load_esc50(root: str | os.PathLike, *, max_missing: float = DEFAULT_MAX_MISSING
               ) -> Benchmark:
    """ESC-50 (``ESC-50-master/``): ``meta/esc50.csv`` (columns filename, fold, target,
    category) and ``audio/<filename>``; 50 classes ordered by ``target``; 5-fold
    cross-validation over the official folds 1..5."""
    name, root = "ESC-50", Path(root).absolute()
    meta = require_file(name, root, "meta/esc50.csv")
    audio = require_dir(name, root, "audio")
    folds = tuple(str(k) for k in range(1, 6))
    rows = read_table(name, meta, ("filename", "fold", "target", "category"))
    pairs = [(line, _int(name, meta, line, "target", r["target"]), r["category"])
             for line, r in rows]
    listed = [Listed(BenchmarkClip(
        id=os.path.splitext(r["filename"])[0], path=str(audio / r["filename"]),
        labels=(r["category"],), fold_or_split=_fold(name, meta, line, r["fold"], folds)),
        f"meta/esc50.csv:{line}") for line, r in rows]
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="esc50", domain="sound", task="multiclass",
                     classes=_indexed_classes(name, meta, pairs), clips=clips,
                     protocol=fold_protocol(folds),
                     protocol_name="5-fold cross-validation over the official folds 1..5",
                     root=str(root), skipped=skipped, listed=len(listed))


def load_urbansound8k(root: str | os.PathLike, *, max_missing: float = DEFAULT_MAX_MISSING
                      ) -> Benchmark:
    """UrbanSound8K (``UrbanSound8K/``): ``metadata/UrbanSound8K.csv`` (columns
    slice_file_name, fold, classID, class) and ``audio/fold<k>/<slice_file_name>``; 10 classes
    ordered by ``classID``; 10-fold cross-validation over the official folds 1..10."""
    name, root = "UrbanSound8K", Path(root).absolute()
    meta = require_file(name, root, "metadata/UrbanSound8K.csv")
    audio = require_dir(name, root, "audio")
    folds = tuple(str(k) for k in range(1, 11))
    rows = read_table(name, meta, ("slice_file_name", "fold", "classID", "class"))
    pairs = [(line, _int(name, meta, line, "classID", r["classID"]), r["class"])
             for line, r in rows]
    listed = []
    for line, r in rows:
        fold = _fold(name, meta, line, r["fold"], folds)
        listed.append(Listed(BenchmarkClip(
            id=os.path.splitext(r["slice_file_name"])[0],
            path=str(audio / f"fold{fold}" / r["slice_file_name"]),
            labels=(r["class"],), fold_or_split=fold), f"metadata/UrbanSound8K.csv:{line}"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="urbansound8k", domain="sound", task="multiclass",
                     classes=_indexed_classes(name, meta, pairs), clips=clips,
                     protocol=fold_protocol(folds),
                     protocol_name="10-fold cross-validation over the official folds 1..10",
                     root=str(root), skipped=skipped, listed=len(listed))


def load_fsd50k(root: str | os.PathLike, *, max_missing: float = DEFAULT_MAX_MISSING
                ) -> Benchmark:
    """FSD50K (multi-label, 200 classes): ``FSD50K.ground_truth/vocabulary.csv`` (no header:
    index, label, mid), ``dev.csv`` (fname, labels, mids, split with train/val), ``eval.csv``
    (fname, labels, mids); audio ``FSD50K.dev_audio/<fname>.wav`` and
    ``FSD50K.eval_audio/<fname>.wav``. Splits train, val (both from dev) and test (eval)."""
    name, root = "FSD50K", Path(root).absolute()
    gt = "FSD50K.ground_truth"
    vocab_path = require_file(name, root, f"{gt}/vocabulary.csv")
    dev_path = require_file(name, root, f"{gt}/dev.csv")
    eval_path = require_file(name, root, f"{gt}/eval.csv")
    dev_audio = require_dir(name, root, "FSD50K.dev_audio")
    eval_audio = require_dir(name, root, "FSD50K.eval_audio")
    vocab_rows = read_table(name, vocab_path, ("index", "label"),
                            fieldnames=("index", "label", "mid"))
    classes = _indexed_classes(name, vocab_path, [
        (line, _int(name, vocab_path, line, "index", r["index"]), r["label"])
        for line, r in vocab_rows])
    known = set(classes)
    listed = []
    for path, audio, columns in ((dev_path, dev_audio, ("fname", "labels", "split")),
                                 (eval_path, eval_audio, ("fname", "labels"))):
        for line, r in read_table(name, path, columns):
            split = r.get("split", "test")
            if split not in ("train", "val", "test"):
                raise DataError(f"{name}: {path}:{line}: split {split!r}; accepted: train, val")
            labels = tuple(lab.strip() for lab in r["labels"].split(",") if lab.strip())
            for lab in labels:
                if lab not in known:
                    raise unknown_label(name, path, line, lab, classes)
            listed.append(Listed(BenchmarkClip(
                id=r["fname"], path=str(audio / f"{r['fname']}.wav"), labels=labels,
                fold_or_split=split), f"{gt}/{path.name}:{line}"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="fsd50k", domain="sound", task="multilabel", classes=classes,
                     clips=clips, protocol=split_protocol(),
                     protocol_name="train/val/test: dev.csv train and val, eval.csv test",
                     root=str(root), skipped=skipped, listed=len(listed))


def _audio_index(folder: Path) -> dict[str, str]:
    """Stem -> path of the audio files in ``folder`` and its ``train/``, ``test/`` subfolders
    (one listing instead of a stat per clip and extension)."""
    index: dict[str, str] = {}
    for sub in (folder, folder / "train", folder / "test"):
        if not sub.is_dir():
            continue
        with os.scandir(sub) as entries:
            for entry in entries:
                stem, ext = os.path.splitext(entry.name)
                if ext.lower() in AUDIO_EXTENSIONS:
                    index.setdefault(stem, entry.path)
    return index


def load_vggsound(root: str | os.PathLike, *, audio_dir: str = "audio",
                  name_format: str = "{ytid}_{start:06d}", max_missing: float = 0.3
                  ) -> Benchmark:
    """VGGSound: ``vggsound.csv`` (no header: YouTube id, start second, label, train/test)
    and one 10 s clip per row in ``audio/`` (or ``audio/train``, ``audio/test``) named
    ``<ytid>_<start:06d>`` + an audio extension (``---g-f_I2yQ_000001.wav``; change with
    ``name_format``, fields ytid, start, end). Classes: the labels, sorted. Train/test, no
    val. YouTube downloads always miss clips, hence the larger default ``max_missing``."""
    name, root = "VGGSound", Path(root).absolute()
    meta = require_file(name, root, "vggsound.csv")
    audio = require_dir(name, root, audio_dir)
    index = _audio_index(audio)
    listed, labels = [], set()
    rows = read_table(name, meta, ("ytid", "start", "label", "split"),
                      fieldnames=("ytid", "start", "label", "split"))
    for line, r in rows:
        if line == 1 and not r["start"].lstrip("-").isdigit():
            continue  # a header row written by some copies of the file
        start = _int(name, meta, line, "start", r["start"])
        if r["split"] not in ("train", "test"):
            raise DataError(f"{name}: {meta}:{line}: split {r['split']!r}; accepted: "
                            "train, test")
        try:
            stem = name_format.format(ytid=r["ytid"], start=start, end=start + 10)
        except (KeyError, IndexError, ValueError) as err:
            raise DataError(f"{name}: name_format {name_format!r} failed ({err}); fields: "
                            "ytid, start, end") from None
        labels.add(r["label"])
        listed.append(Listed(BenchmarkClip(
            id=stem, path=index.get(stem, str(audio / f"{stem}.wav")), labels=(r["label"],),
            fold_or_split=r["split"]), f"vggsound.csv:{line}"))
    clips, skipped = resolve_clips(name, listed, max_missing)
    return Benchmark(name="vggsound", domain="sound", task="multiclass",
                     classes=tuple(sorted(labels)), clips=clips,
                     protocol=split_protocol(val=None),
                     protocol_name="train/test as in vggsound.csv (no validation split)",
                     root=str(root), skipped=skipped, listed=len(listed))
