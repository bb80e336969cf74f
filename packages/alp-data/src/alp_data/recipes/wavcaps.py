"""WavCaps: one published JSON per subset, ``json_files/{subset}/{as,bbc,fsd,sb}_final.json``
shaped ``{"data": [{"id", "caption", "audio"?, "duration"?, ...}]}``, over the subset's audio
extracted from ``Zip_files/{subset}/`` (FLAC files named by id).

Every entry becomes one training clip with its one ChatGPT-written caption. AudioSet_SL ids
carry a ``.wav`` suffix (``Y...wav``) while the released audio is FLAC, so a known audio suffix
is dropped from the id before the file is looked up. The folder the zips extract to is
configurable (``audio_pattern``) because the archives nest a long internal path.
"""

from __future__ import annotations

import json
import os
from typing import Literal

import fsspec
from pydantic import Field

from alp_core.errors import DataError
from alp_data.manifest import Caption
from alp_data.recipes.audiocaps import locations
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, join

SUBSET_JSON = {"AudioSet_SL": "as_final.json", "BBC_Sound_Effects": "bbc_final.json",
               "FreeSound": "fsd_final.json", "SoundBible": "sb_final.json"}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


class WavCapsConfig(RecipeConfig):
    """WavCaps, one subset per prepare, from its JSON and extracted audio."""

    subset: Literal["AudioSet_SL", "BBC_Sound_Effects", "FreeSound", "SoundBible"] = Field(
        description="the WavCaps subset")
    json_file: str = Field("", description="the subset's JSON under root; default "
                           "json_files/{subset}/{as,bbc,fsd,sb}_final.json")
    audio_pattern: str = Field("audio/{subset}/{id}.flac", description="audio path under "
                               "root; fields: subset, id (without a .wav/.flac suffix)")
    extensions: list[str] = Field([".flac", ".wav", ".mp3", ".ogg"],
                                  description="other suffixes tried for the pattern's")
    split: Literal["train", "test"] = Field("train", description="where the clips go")


def strip_suffix(ident: str) -> str:
    """``ident`` without a trailing audio suffix (AudioSet_SL ids end in ``.wav``)."""
    stem, ext = os.path.splitext(ident)
    return stem if ext.lower() in AUDIO_SUFFIXES else ident


def read_json_data(path: str) -> list[dict]:
    """The ``data`` list of a WavCaps JSON; a missing file or key is a :class:`DataError`."""
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            doc = json.load(handle)
    except FileNotFoundError as err:
        raise DataError(f"corpus metadata file not found: {path}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a UTF-8 JSON document ({err})") from err
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataError(f'{path}: expected {{"data": [{{"id", "caption", ...}}]}}, found '
                        f"{type(doc).__name__} without a data list")
    return data


class WavCaps(Recipe):
    """One clip per JSON entry, captioned by its one caption."""

    source, corpus, domain = "wavcaps", "wavcaps", "sound"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        path = join(cfg.root, cfg.json_file or f"json_files/{cfg.subset}/"
                    f"{SUBSET_JSON[cfg.subset]}")
        out: list[Candidate] = []
        for index, item in enumerate(read_json_data(path)):
            if not isinstance(item, dict) or not str(item.get("id", "")).strip() or not str(
                    item.get("caption", "")).strip():
                raise DataError(f"{path}: data[{index}] lacks a non-empty id or caption; "
                                f'accepted: {{"id": str, "caption": str, ...}}')
            ident = strip_suffix(str(item["id"]).strip())
            out.append(Candidate(
                id=ident, split=cfg.split,
                audio=locations(cfg.root, cfg.audio_pattern, cfg.extensions,
                                subset=cfg.subset, id=ident),
                captions=(Caption(str(item["caption"]).strip(), "sentence", "chatgpt"),),
                labels={"subset": cfg.subset}))
        return out
