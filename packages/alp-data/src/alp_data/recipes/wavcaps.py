"""WavCaps: one published JSON per subset, ``json_files/{subset}/{as,bbc,fsd,sb}_final.json``
shaped ``{"data": [{"id", "caption", "audio"?, "duration"?, ...}]}``, over the subset's audio
extracted from ``Zip_files/{subset}/`` (FLAC files named by id).

Every entry becomes one training clip with its one ChatGPT-written caption. AudioSet_SL ids
carry a ``.wav`` suffix (``Y...wav``) while the released audio is FLAC, so a known audio suffix
is dropped from the id before the file is looked up. The folder the zips extract to is
configurable (``audio_pattern``) because the archives nest a long internal path.

``blacklist`` applies WavCaps's own blacklists (``json_files/blacklist/blacklist_exclude_*.json``
in the release: the AudioSet and FreeSound clips that overlap AudioCaps, Clotho and other
evaluation sets), shaped ``{"AudioSet": ["Y<ytid>.wav", ...], "FreeSound": ["<id>", ...]}``.
A list applies only to its own subset (FreeSound numbers are not matched against SoundBible's
or BBC's), and every clip left out is listed in ``prepare_report.json`` with the file that
listed it.
"""

from __future__ import annotations

import json
import os
from typing import Literal

import fsspec
from pydantic import Field

from alp_core.errors import DataError
from alp_data.manifest import Caption, is_url
from alp_data.recipes.audiocaps import locations
from alp_data.recipes.common import Candidate, Recipe, RecipeConfig, bad_row, join
from alp_data.scrub import safe_cause, scrub_url

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
    blacklist: list[str] = Field([], description="WavCaps blacklist JSONs (under root unless "
                                 "absolute or a URL), e.g. json_files/blacklist/"
                                 "blacklist_exclude_all_ac.json; their ids of this subset "
                                 "are left out")


#: The key of each subset in WavCaps's blacklist files (the published ones hold the first two).
BLACKLIST_KEYS = {"AudioSet_SL": ("AudioSet", "AudioSet_SL"), "FreeSound": ("FreeSound",),
                  "BBC_Sound_Effects": ("BBC_Sound_Effects", "BBC"),
                  "SoundBible": ("SoundBible",)}


def strip_suffix(ident: str) -> str:
    """``ident`` without a trailing audio suffix (AudioSet_SL ids end in ``.wav``)."""
    stem, ext = os.path.splitext(ident)
    return stem if ext.lower() in AUDIO_SUFFIXES else ident


def _load_json(path: str, what: str) -> object:
    """The JSON document at ``path``; missing (``what`` names the file's kind) or not UTF-8
    JSON is a :class:`DataError`."""
    try:
        with fsspec.open(path, "rt", encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError as err:
        raise DataError(f"{what} not found: {scrub_url(path)}") from safe_cause(err, path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{scrub_url(path)}: not a UTF-8 JSON document ({err})") from err


def read_json_data(path: str) -> list[dict]:
    """The ``data`` list of a WavCaps JSON; a missing file or key is a :class:`DataError`."""
    doc = _load_json(path, "corpus metadata file")
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataError(f'{scrub_url(path)}: expected {{"data": [{{"id", "caption", ...}}]}}, '
                        f"found {type(doc).__name__} without a data list")
    return data


def read_blacklist(path: str, subset: str) -> set[str]:
    """The ids (without audio suffix) that the WavCaps blacklist ``path`` lists for
    ``subset``; a missing or malformed file is a :class:`DataError` naming it."""
    doc = _load_json(path, "WavCaps blacklist")
    if not isinstance(doc, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, (str, int)) for i in ids)
            for ids in doc.values()):
        raise DataError(f'{scrub_url(path)}: expected a WavCaps blacklist {{"AudioSet": '
                        f'["Y<ytid>.wav", ...], "FreeSound": ["<id>", ...]}} (lists of ids by '
                        "subset)")
    return {strip_suffix(str(i).strip()) for key in BLACKLIST_KEYS[subset]
            for i in doc.get(key, [])}


class WavCaps(Recipe):
    """One clip per JSON entry, captioned by its one caption."""

    source, corpus, domain = "wavcaps", "wavcaps", "sound"

    def candidates(self) -> list[Candidate]:
        cfg = self.config
        path = join(cfg.root, cfg.json_file or f"json_files/{cfg.subset}/"
                    f"{SUBSET_JSON[cfg.subset]}")
        listed: dict[str, str] = {}
        for file in cfg.blacklist:
            where = file if is_url(file) or os.path.isabs(file) else join(cfg.root, file)
            for ident in read_blacklist(where, cfg.subset):
                listed.setdefault(ident, where)
        out: list[Candidate] = []
        excluded: list[dict] = []
        for index, item in enumerate(read_json_data(path)):
            if not isinstance(item, dict) or not str(item.get("id", "")).strip() or not str(
                    item.get("caption", "")).strip():
                self.bad_rows.append(bad_row(f"{path}: data[{index}]",
                                             "lacks a non-empty id or caption"))
                continue
            ident = strip_suffix(str(item["id"]).strip())
            if ident in listed:
                excluded.append({"id": ident,
                                 "reason": f"blacklisted in {scrub_url(listed[ident])}"})
                continue
            out.append(Candidate(
                id=ident, split=cfg.split,
                audio=locations(cfg.root, cfg.audio_pattern, cfg.extensions,
                                subset=cfg.subset, id=ident),
                captions=(Caption(str(item["caption"]).strip(), "sentence", "chatgpt"),),
                labels={"subset": cfg.subset}))
        self.excluded = excluded if cfg.blacklist else None
        return out
