"""AudioCaps: ``train.csv``, ``val.csv``, ``test.csv`` with ``audiocap_id, youtube_id,
start_time, caption`` (one row per caption), over 10 s AudioSet clips downloaded by the user.

The audio is not distributed, so file naming depends on the download tool; the default
``audio/{split}/{youtube_id}_{start_time}.wav`` is configurable through ``audio_pattern`` and
other ``extensions`` are tried in turn. Rows sharing a YouTube id and start time (the 5
captions per val/test clip) become one clip with all its captions.
"""

from __future__ import annotations

import os

from pydantic import Field

from alp_data.manifest import Caption
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, exists, join, read_csv, route

SPLITS = ("train", "val", "test")
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")


class AudioCapsConfig(RecipeConfig):
    """AudioCaps from its published CSVs and the audio you downloaded."""

    csv_dir: str = Field("", description="folder of train.csv/val.csv/test.csv under root")
    audio_pattern: str = Field(
        "audio/{split}/{youtube_id}_{start_time}.wav",
        description="audio path under root; fields: split (train/val/test), youtube_id, "
        "start_time, audiocap_id (the clip's first)")
    extensions: list[str] = Field([".wav", ".flac", ".mp3", ".ogg"],
                                  description="other suffixes tried for the pattern's")


def locations(root: str, pattern: str, extensions: list[str], **fields: str) -> tuple[str, ...]:
    """The pattern filled in, then the same path with each other extension."""
    first = join(root, pattern.format(**fields))
    stem, ext = os.path.splitext(first)
    return (first, *(stem + e for e in extensions if e != ext))


class AudioCaps(Recipe):
    """Clips in train/val/test; val goes where ``val_to`` says (default train)."""

    source, corpus, domain = "audiocaps", "audiocaps", "sound"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        out: list[Candidate] = []
        for split in SPLITS:
            target = route(split, cfg)
            path = join(cfg.root, cfg.csv_dir, f"{split}.csv")
            if target is None or (split == "val" and not exists(path)):
                continue
            clips: dict[tuple[str, str], list[dict[str, str]]] = {}
            for row in read_csv(path, COLUMNS, self.bad_rows):
                clips.setdefault((row["youtube_id"], row["start_time"]), []).append(row)
            for (ytid, start), rows in clips.items():
                audio = locations(cfg.root, cfg.audio_pattern, cfg.extensions, split=split,
                                  youtube_id=ytid, start_time=start,
                                  audiocap_id=rows[0]["audiocap_id"])
                out.append(Candidate(
                    id=f"{ytid}_{start}", audio=audio, split=target,
                    captions=tuple(Caption(r["caption"].strip(), "sentence", "human")
                                   for r in rows if r["caption"].strip()),
                    labels={"corpus_split": split,
                            "audiocap_ids": ",".join(r["audiocap_id"] for r in rows)}))
        return out

