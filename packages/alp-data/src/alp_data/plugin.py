"""Registers the built-in data sources through the ALP hooks (no torch import).

The corpus recipes' configs are imported from their modules, which import only pydantic,
fsspec and soundfile at module level, so registration stays cheap.
"""

from __future__ import annotations

from alp_core import DataSourceRecord, hookimpl
from alp_data.demo.corpus import DemoCorpusConfig
from alp_data.recipes.audiocaps import AudioCapsConfig
from alp_data.recipes.clotho import ClothoConfig
from alp_data.recipes.musiccaps import MusicCapsConfig
from alp_data.recipes.song_describer import SongDescriberConfig
from alp_data.sources import ManifestSourceConfig


@hookimpl
def alp_data_sources() -> list[DataSourceRecord]:
    return [
        DataSourceRecord(
            "demo", DemoCorpusConfig, "alp_data.sources:DemoSource",
            "embedded deterministic corpus: speech-like, music and environmental sound + captions",
        ),
        DataSourceRecord(
            "manifest", ManifestSourceConfig, "alp_data.sources:ManifestSource",
            "your own JSONL manifests (train and test; paths or fsspec URLs)",
        ),
        DataSourceRecord(
            "audiocaps", AudioCapsConfig, "alp_data.recipes.audiocaps:AudioCaps",
            "AudioCaps: train/val/test.csv + downloaded 10 s AudioSet clips",
        ),
        DataSourceRecord(
            "clotho", ClothoConfig, "alp_data.recipes.clotho:Clotho",
            "Clotho v2.1: clotho_captions_*.csv + development/validation/evaluation audio",
        ),
        DataSourceRecord(
            "musiccaps", MusicCapsConfig, "alp_data.recipes.musiccaps:MusicCaps",
            "MusicCaps: musiccaps-public.csv + downloaded clips (AudioSet eval -> test)",
        ),
        DataSourceRecord(
            "song_describer", SongDescriberConfig,
            "alp_data.recipes.song_describer:SongDescriber",
            "Song Describer: song_describer.csv + audio/ (evaluation set)",
        ),
    ]
