"""MusicCaps: ``musiccaps-public.csv`` with ``ytid, start_s, end_s, audioset_positive_labels,
aspect_list, caption, author_id, is_balanced_subset, is_audioset_eval``, over 10 s YouTube
segments downloaded by the user.

``is_audioset_eval`` True -> test (the study removed these from training), else train. The
default audio naming is ``audio/{ytid}.wav`` holding the 10 s segment; with
``full_tracks=true`` the files hold the whole video's audio and the segment is read at
``start_s`` (the manifest's offset). The aspect list becomes a second, tag-style caption.
"""

from __future__ import annotations

import ast

from pydantic import Field

from alp_data.manifest import Caption
from alp_data.recipes.audiocaps import locations
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, bad_row, join, read_csv_lines

COLUMNS = ("ytid", "start_s", "end_s", "aspect_list", "caption", "is_audioset_eval")


class MusicCapsConfig(RecipeConfig):
    """MusicCaps from its published CSV and the audio you downloaded."""

    csv: str = Field("musiccaps-public.csv", description="the CSV under root")
    audio_pattern: str = Field("audio/{ytid}.wav", description="audio path under root; "
                               "fields: ytid, start_s, end_s")
    extensions: list[str] = Field([".wav", ".flac", ".mp3", ".ogg"],
                                  description="other suffixes tried for the pattern's")
    full_tracks: bool = Field(False, description="files hold the whole video's audio")
    aspect_caption: bool = Field(True, description="add the aspect list as a tag caption")


class MusicCaps(Recipe):
    """One clip per CSV row: the expert caption, and its aspect list as tags."""

    source, corpus, domain = "musiccaps", "musiccaps", "music"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        path = join(cfg.root, cfg.csv)
        out: list[Candidate] = []
        for line, row in read_csv_lines(path, COLUMNS, self.bad_rows):
            try:
                start, end = float(row["start_s"]), float(row["end_s"])
                aspects = ast.literal_eval(row["aspect_list"] or "[]")
            except (ValueError, SyntaxError) as err:
                self.bad_rows.append(bad_row(f"{path}:{line}",
                                             f"bad start_s/end_s/aspect_list ({err})"))
                continue
            caps = [Caption(row["caption"].strip(), "detailed", "human")]
            if cfg.aspect_caption and aspects:
                caps.append(Caption(", ".join(map(str, aspects)), "tags", "human"))
            evaluation = row["is_audioset_eval"].strip().lower() == "true"
            fields = {"ytid": row["ytid"], "start_s": row["start_s"], "end_s": row["end_s"]}
            out.append(Candidate(
                id=f"{row['ytid']}_{row['start_s']}", split="test" if evaluation else "train",
                audio=locations(cfg.root, cfg.audio_pattern, cfg.extensions, **fields),
                captions=tuple(c for c in caps if c.text),
                offset=start if cfg.full_tracks else 0.0, duration=end - start,
                labels={"aspects": ", ".join(map(str, aspects)),
                        "audioset_labels": row.get("audioset_positive_labels", "") or "",
                        "corpus_split": "audioset_eval" if evaluation else "audioset_train"}))
        return out
