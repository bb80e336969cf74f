"""JamendoMaxCaps: ``final_caption30sec.jsonl`` with one ``{"id", "caption", "start_time",
"end_time"}`` row per captioned 30 s window of a Jamendo track, over the tracks' MP3s
(``<id>.mp3``, as the dataset card's script writes them out of ``data/*.parquet``).

Each row becomes one clip: the window of the track at ``start_time`` for
``end_time - start_time`` seconds (the manifest's offset and duration), id
``{id}_{start_time}``. All clips go to ``split`` (train by default: the corpus has no splits).
"""

from __future__ import annotations

import json
from typing import Literal

import fsspec
from pydantic import Field

from alp_core.errors import DataError
from alp_data.manifest import Caption
from alp_data.recipes.audiocaps import locations
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, bad_row, join
from alp_data.scrub import safe_cause, scrub_url


class JamendoMaxCapsConfig(RecipeConfig):
    """JamendoMaxCaps from its caption JSONL and the extracted MP3s."""

    captions: str = Field("final_caption30sec.jsonl", description="the caption JSONL under root")
    audio_pattern: str = Field("mp3_files/{id}.mp3", description="audio path under root; "
                               "field: id (the Jamendo track id)")
    extensions: list[str] = Field([".mp3", ".flac", ".wav", ".ogg"],
                                  description="other suffixes tried for the pattern's")
    split: Literal["train", "test"] = Field("train", description="where the clips go")


def read_jsonl(path: str, bad: list[dict] | None = None) -> list[tuple[int, dict]]:
    """``(line number, object)`` per non-blank line; errors name the file and line. A line
    that is not a JSON object goes to ``bad`` (:func:`bad_row`) when given, else raises."""
    shown = scrub_url(path)
    try:
        with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as handle:
            lines = handle.read().split("\n")
    except FileNotFoundError as err:
        raise DataError(f"corpus metadata file not found: {shown}") from safe_cause(err, path)
    except UnicodeDecodeError as err:
        raise DataError(f"{shown}: not UTF-8 ({err})") from err
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            problem = "" if isinstance(row, dict) else "expected a JSON object"
        except json.JSONDecodeError as err:
            problem = f"invalid JSON ({err.msg}); one object per line expected"
        if problem:
            if bad is None:
                raise DataError(f"{shown}:{number}: {problem}")
            bad.append(bad_row(f"{path}:{number}", problem))
            continue
        rows.append((number, row))
    return rows


class JamendoMaxCaps(Recipe):
    """One clip per captioned window."""

    source, corpus, domain = "jamendomaxcaps", "jamendomaxcaps", "music"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        path = join(cfg.root, cfg.captions)
        out: list[Candidate] = []
        for number, row in read_jsonl(path, self.bad_rows):
            try:
                track = str(row["id"]).strip()
                text = str(row["caption"]).strip()
                start, end = float(row["start_time"]), float(row["end_time"])
            except (KeyError, TypeError, ValueError) as err:
                self.bad_rows.append(bad_row(f"{path}:{number}", f"bad row ({err!r}); accepted: "
                                             '{"id", "caption", "start_time", "end_time"}'))
                continue
            if not track or not text or end <= start:
                self.bad_rows.append(bad_row(f"{path}:{number}",
                                             "empty id/caption or end_time <= start_time"))
                continue
            out.append(Candidate(
                id=f"{track}_{row['start_time']}", split=cfg.split, offset=start,
                duration=end - start,
                audio=locations(cfg.root, cfg.audio_pattern, cfg.extensions, id=track),
                captions=(Caption(text, "detailed", "qwen2-audio"),),
                labels={"track_id": track}))
        return out
