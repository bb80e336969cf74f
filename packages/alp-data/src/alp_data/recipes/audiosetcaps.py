"""AudioSetCaps: caption CSVs with ``id, caption`` columns, one per audio source
(``AudioSetCaps_caption.csv``, ``VGGSound_AudioSetCaps_caption.csv``,
``YouTube-8M_AudioSetCaps_caption.csv``), over 10 s clips the user downloaded.

The audio is not distributed, so its naming is configurable through ``audio_pattern``
(default ``audio/{source}/{id}.wav``, other ``extensions`` tried). Each row becomes one clip
with its LLM-written caption; a suffix such as ``.wav`` on an id is dropped.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from alp_data.manifest import Caption
from alp_data.recipes.audiocaps import locations
from alp_data.recipes.common import (
    Candidate,
    Recipe,
    RecipeConfig,
    bad_row,
    join,
    read_csv_lines,
)
from alp_data.recipes.wavcaps import strip_suffix

SOURCE_CSV = {"audioset": "AudioSetCaps_caption.csv",
              "vggsound": "VGGSound_AudioSetCaps_caption.csv",
              "youtube8m": "YouTube-8M_AudioSetCaps_caption.csv"}


class AudioSetCapsConfig(RecipeConfig):
    """AudioSetCaps captions of one audio source over the audio you downloaded."""

    source: Literal["audioset", "vggsound", "youtube8m"] = Field(
        description="which audio the captions describe")
    csv: str = Field("", description="the caption CSV under root; default the source's "
                     "published name (AudioSetCaps_caption.csv, ...)")
    audio_pattern: str = Field("audio/{source}/{id}.wav", description="audio path under "
                               "root; fields: source, id")
    extensions: list[str] = Field([".wav", ".flac", ".mp3", ".ogg"],
                                  description="other suffixes tried for the pattern's")
    split: Literal["train", "test"] = Field("train", description="where the clips go")


class AudioSetCaps(Recipe):
    """One clip per CSV row; rows repeating an id add captions to that clip."""

    source, corpus, domain = "audiosetcaps", "audiosetcaps", "sound"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        path = join(cfg.root, cfg.csv or SOURCE_CSV[cfg.source])
        clips: dict[str, list[str]] = {}
        for line, row in read_csv_lines(path, ("id", "caption"), self.bad_rows):
            text = row["caption"].strip()
            ident = strip_suffix(row["id"].strip())
            if not ident:
                self.bad_rows.append(bad_row(f"{path}:{line}", "empty id"))
                continue
            texts = clips.setdefault(ident, [])  # a clip without any caption is reported
            if text:
                texts.append(text)
        return [Candidate(
            id=ident, split=cfg.split,
            audio=locations(cfg.root, cfg.audio_pattern, cfg.extensions, source=cfg.source,
                            id=ident),
            captions=tuple(Caption(t, "detailed", "llm") for t in texts),
            labels={"audio_source": cfg.source}) for ident, texts in clips.items()]
