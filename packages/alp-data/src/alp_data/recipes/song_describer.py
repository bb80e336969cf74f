"""Song Describer (SDD): ``song_describer.csv`` with ``caption_id, track_id, caption,
is_valid_subset, familiarity, artist_id, album_id, path, duration, ...`` and ``audio.zip``
extracted to ``audio/`` (``audio/00/<track_id>.2min.mp3``: 2-minute crops of Jamendo tracks).

The CSV's ``path`` says ``00/<track_id>.mp3``; the recipe tries the ``.2min.mp3`` file first,
then the path as written. SDD is an evaluation set, so every clip goes to ``split`` (test by
default); captions of one track are gathered into one clip.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from alp_data.manifest import Caption
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, join, read_csv

COLUMNS = ("caption_id", "track_id", "caption", "path")


class SongDescriberConfig(RecipeConfig):
    """Song Describer from its CSV and audio folder."""

    csv: str = Field("song_describer.csv", description="the CSV under root")
    audio_dir: str = Field("audio", description="folder the CSV's paths are relative to")
    split: Literal["train", "test"] = Field("test", description="where the clips go")
    valid_only: bool = Field(False, description="only captions with is_valid_subset True")


class SongDescriber(Recipe):
    """One clip per track with all its captions."""

    source, corpus, domain = "song_describer", "song_describer", "music"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        tracks: dict[str, list[dict[str, str]]] = {}
        for row in read_csv(join(cfg.root, cfg.csv), COLUMNS, self.bad_rows):
            if cfg.valid_only and row.get("is_valid_subset", "").strip().lower() != "true":
                continue
            tracks.setdefault(row["track_id"], []).append(row)
        out: list[Candidate] = []
        for track, rows in tracks.items():
            rel = rows[0]["path"]
            crop = rel[:-4] + ".2min.mp3" if rel.endswith(".mp3") else rel
            audio = tuple(dict.fromkeys(join(cfg.root, cfg.audio_dir, p) for p in (crop, rel)))
            out.append(Candidate(
                id=track, audio=audio, split=cfg.split,
                captions=tuple(Caption(r["caption"].strip(), "sentence", "human")
                               for r in rows if r["caption"].strip()),
                labels={"caption_ids": ",".join(r["caption_id"] for r in rows)}))
        return out
