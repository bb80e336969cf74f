"""Clotho (v2.1): ``clotho_captions_{development,validation,evaluation}.csv`` with
``file_name, caption_1 .. caption_5`` and the audio extracted from the 7z archives into
``development/``, ``validation/`` and ``evaluation/`` beside them.

development -> train, evaluation -> test, validation -> ``val_to`` (Clotho v1 has no
validation split; its CSV may be absent). Each file becomes one clip with its 5 captions.
"""

from __future__ import annotations

import os

from pydantic import Field

from alp_data.manifest import Caption
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, exists, join, read_csv, route

SPLITS = {"development": "train", "validation": "val", "evaluation": "test"}
CAPTION_COLUMNS = tuple(f"caption_{i}" for i in range(1, 6))


class ClothoConfig(RecipeConfig):
    """Clotho from its caption CSVs and audio folders."""

    csv_dir: str = Field("", description="folder of the clotho_captions_*.csv under root")
    audio_dir: str = Field("", description="folder holding development/, validation/, "
                           "evaluation/ under root")


class Clotho(Recipe):
    """One clip per audio file, with all five captions."""

    source, corpus, domain = "clotho", "clotho", "sound"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        out: list[Candidate] = []
        for name, split in SPLITS.items():
            target = route(split, cfg)
            path = join(cfg.root, cfg.csv_dir, f"clotho_captions_{name}.csv")
            if target is None or (split == "val" and not exists(path)):
                continue
            for row in read_csv(path, ("file_name", *CAPTION_COLUMNS), self.bad_rows):
                caps = tuple(Caption(row[c].strip(), "sentence", "human")
                             for c in CAPTION_COLUMNS if (row[c] or "").strip())
                out.append(Candidate(
                    id=os.path.splitext(row["file_name"])[0], split=target, captions=caps,
                    audio=(join(cfg.root, cfg.audio_dir, name, row["file_name"]),),
                    labels={"corpus_split": name}))
        return out
