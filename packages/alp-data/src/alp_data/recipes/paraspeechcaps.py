"""ParaSpeechCaps: rows with ``source, relative_audio_path, text_description`` (a list of
style descriptions), ``transcription``, ``speakerid``, ``gender``, ... in the splits
``train_scaled``, ``train_base``, ``dev``, ``holdout``, published as ``data/{split}-*.parquet``.

The audio comes from VoxCeleb1/2, EARS, Expresso and Emilia, downloaded by the user;
``relative_audio_path`` is joined to ``audio_dir``. Rows are read from the Parquet shards
(needs ``pyarrow``: the ``alp-data[parquet]`` extra) or from ``{split}.jsonl`` /
``{split}-*.jsonl`` exports of the same rows.
train_base and train_scaled -> train, holdout -> test, dev -> ``val_to``.
"""

from __future__ import annotations

import os

import fsspec
from pydantic import Field

from alp_core.errors import DataError
from alp_data.manifest import Caption
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, bad_row, join, route
from alp_data.recipes.jamendomaxcaps import read_jsonl

SPLITS = {"train_base": "train", "train_scaled": "train", "dev": "val", "holdout": "test"}
LABELS = ("source", "speakerid", "gender", "accent", "transcription")


class ParaSpeechCapsConfig(RecipeConfig):
    """ParaSpeechCaps from its split files and the source corpora's audio."""

    data_dir: str = Field("data", description="folder of the {split}-*.parquet (or .jsonl) "
                          "files under root")
    audio_dir: str = Field("audio", description="folder relative_audio_path is relative to")
    splits: list[str] = Field(list(SPLITS), description="which of train_base, train_scaled, "
                              "dev, holdout to read")


def split_files(folder: str, split: str) -> list[str]:
    """The split's Parquet shards, else its JSONL file(s), as full paths/URLs."""
    fs, inner = fsspec.core.url_to_fs(folder)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    for pattern in (f"{split}-*.parquet", f"{split}.parquet", f"{split}.jsonl",
                    f"{split}-*.jsonl"):
        found = sorted(fs.glob(inner.rstrip("/") + "/" + pattern))
        if found:
            return [p if protocol in ("file", "local") else fs.unstrip_protocol(p)
                    for p in found]
    return []


def read_rows(path: str, bad: list[dict] | None = None) -> list[tuple[str, dict]]:
    """``(location, row)`` of a Parquet or JSONL file (a bad JSONL line goes to ``bad``)."""
    if path.endswith(".jsonl"):
        return [(f"{path}:{n}", row) for n, row in read_jsonl(path, bad)]
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise DataError(f"{path}: reading Parquet needs pyarrow (pip install "
                        "'alp-data[parquet]'), or export the split as {split}.jsonl") from err
    with fsspec.open(path, "rb") as handle:
        rows = pq.read_table(handle).to_pylist()
    return [(f"{path}[{i}]", row) for i, row in enumerate(rows)]


class ParaSpeechCaps(Recipe):
    """One clip per row with all its style descriptions."""

    source, corpus, domain = "paraspeechcaps", "paraspeechcaps", "speech"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        folder = join(cfg.root, cfg.data_dir)
        out: list[Candidate] = []
        for split in cfg.splits:
            if split not in SPLITS:
                raise DataError(f"paraspeechcaps: unknown split {split!r}; accepted: "
                                f"{', '.join(SPLITS)}")
            target = route(SPLITS[split], cfg)
            if target is None:
                continue
            files = split_files(folder, split)
            if not files:
                raise DataError(f"paraspeechcaps: no {split}-*.parquet or {split}.jsonl in "
                                f"{folder}")
            for path in files:
                for where, row in read_rows(path, self.bad_rows):
                    cand = self._candidate(where, row, split, target)
                    if cand is not None:  # one without a description is reported
                        out.append(cand)
        return out

    def _candidate(self, where: str, row: dict, split: str, target: str) -> Candidate | None:
        rel = row.get("relative_audio_path") or row.get("audio_path")
        texts = row.get("text_description")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(rel, str) or not rel or not isinstance(texts, list):
            self.bad_rows.append(bad_row(where, "needs relative_audio_path (a string) and "
                                         "text_description (a list of strings)"))
            return None
        caps = tuple(Caption(t.strip(), "detailed", "llm")
                     for t in texts if isinstance(t, str) and t.strip())
        labels = {k: str(row[k]) for k in LABELS if row.get(k) not in (None, "")}
        labels["corpus_split"] = split
        return Candidate(id=os.path.splitext(rel)[0], split=target, captions=caps,
                         audio=(join(self.config.root, self.config.audio_dir, rel),),
                         labels=labels)
