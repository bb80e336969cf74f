"""Registers the built-in data sources through the ALP hooks (no torch import).

The corpus recipes' configs are imported from their modules, which import only pydantic,
fsspec and soundfile at module level, so registration stays cheap.
"""

from __future__ import annotations

from alp_core import DataSourceRecord, hookimpl
from alp_data.demo.corpus import DemoCorpusConfig
from alp_data.recipes.audiocaps import AudioCapsConfig
from alp_data.recipes.audiosetcaps import AudioSetCapsConfig
from alp_data.recipes.clotho import ClothoConfig
from alp_data.recipes.jamendomaxcaps import JamendoMaxCapsConfig
from alp_data.recipes.lhotse_io import LhotseConfig
from alp_data.recipes.musiccaps import MusicCapsConfig
from alp_data.recipes.paraspeechcaps import ParaSpeechCapsConfig
from alp_data.recipes.song_describer import SongDescriberConfig
from alp_data.recipes.wavcaps import WavCapsConfig
from alp_data.shards.source import ShardsSourceConfig
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
            "shards", ShardsSourceConfig, "alp_data.shards.source:ShardsSource",
            "tar shards written by `alp data shard` (folder or brace URL per split), "
            "streamed with exact mid-epoch resume",
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
        DataSourceRecord(
            "wavcaps", WavCapsConfig, "alp_data.recipes.wavcaps:WavCaps",
            "WavCaps (subset=AudioSet_SL|BBC_Sound_Effects|FreeSound|SoundBible): "
            "json_files/{subset}/*_final.json + FLAC audio",
        ),
        DataSourceRecord(
            "audiosetcaps", AudioSetCapsConfig, "alp_data.recipes.audiosetcaps:AudioSetCaps",
            "AudioSetCaps (source=audioset|vggsound|youtube8m): caption CSV + your audio",
        ),
        DataSourceRecord(
            "jamendomaxcaps", JamendoMaxCapsConfig,
            "alp_data.recipes.jamendomaxcaps:JamendoMaxCaps",
            "JamendoMaxCaps: final_caption30sec.jsonl + mp3_files/<id>.mp3 (30 s windows)",
        ),
        DataSourceRecord(
            "paraspeechcaps", ParaSpeechCapsConfig,
            "alp_data.recipes.paraspeechcaps:ParaSpeechCaps",
            "ParaSpeechCaps: data/{split}-*.parquet (or .jsonl) + source corpora audio",
        ),
        DataSourceRecord(
            "lhotse", LhotseConfig, "alp_data.recipes.lhotse_io:LhotseSource",
            "lhotse CutSets of MonoCuts, captions in supervision.custom['caption'] "
            "(needs alp-data[lhotse])",
        ),
    ]
