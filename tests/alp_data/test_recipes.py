"""Corpus recipes on small files written in each corpus's published layout: AudioCaps,
Clotho, MusicCaps, Song Describer, WavCaps, AudioSetCaps, JamendoMaxCaps, ParaSpeechCaps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import DataError
from alp_data.manifest import read_manifest
from alp_data.recipes.audiocaps import AudioCaps, AudioCapsConfig
from alp_data.recipes.audiosetcaps import AudioSetCaps, AudioSetCapsConfig
from alp_data.recipes.clotho import Clotho, ClothoConfig
from alp_data.recipes.jamendomaxcaps import JamendoMaxCaps, JamendoMaxCapsConfig
from alp_data.recipes.musiccaps import MusicCaps, MusicCapsConfig
from alp_data.recipes.paraspeechcaps import ParaSpeechCaps, ParaSpeechCapsConfig
from alp_data.recipes.song_describer import SongDescriber, SongDescriberConfig
from alp_data.recipes.wavcaps import WavCaps, WavCapsConfig


def _audio(path, seconds, rate=8000, channels=1, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(-0.1, 0.1, (int(seconds * rate), channels))
    sf.write(str(path), data.astype("float32"), rate, format=fmt)


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _by_id(path):
    return {e.id: e for e in read_manifest(path)}


def test_audiocaps_groups_captions_routes_splits_and_probes_audio(tmp_path):
    head = ["audiocap_id", "youtube_id", "start_time", "caption"]
    _csv(tmp_path / "train.csv", head, [[1, "aaa", 30, "a dog barks"], [2, "bbb", 0, "rain"]])
    _csv(tmp_path / "val.csv", head, [[3, "ccc", 10, "wind blows"]])
    _csv(tmp_path / "test.csv", head, [[4 + i, "ddd", 20, f"cap {i}"] for i in range(5)])
    _audio(tmp_path / "audio/train/aaa_30.wav", 1.0, channels=2)
    _audio(tmp_path / "audio/train/bbb_0.flac", 0.5)  # another extension is found too
    _audio(tmp_path / "audio/val/ccc_10.wav", 0.25)
    _audio(tmp_path / "audio/test/ddd_20.wav", 0.75, rate=16000)
    paths = AudioCaps(AudioCapsConfig(root=str(tmp_path))).prepare(tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert sorted(train) == ["aaa_30", "bbb_0", "ccc_10"] and list(test) == ["ddd_20"]
    a = train["aaa_30"]
    assert a.captions == ("a dog barks",) and a.channels == 2 and a.duration == 1.0
    assert a.corpus == "audiocaps" and a.domain == "sound" and a.split == "train"
    assert a.caption_info[0].style == "sentence" and a.caption_info[0].source == "human"
    assert train["bbb_0"].audio.endswith("bbb_0.flac")
    assert train["ccc_10"].labels["corpus_split"] == "val"
    d = test["ddd_20"]
    assert d.captions == tuple(f"cap {i}" for i in range(5)) and d.sample_rate == 16000
    assert d.labels["audiocap_ids"] == "4,5,6,7,8" and d.duration == 0.75
    dropped = AudioCaps(AudioCapsConfig(root=str(tmp_path), val_to="drop")).prepare(
        tmp_path / "out2")
    assert "ccc_10" not in _by_id(dropped["train"])


def test_clotho_keeps_all_five_captions_per_file(tmp_path):
    head = ["file_name", *(f"caption_{i}" for i in range(1, 6))]
    for name, files in (("development", ["Dog bark.wav", "Rain.wav"]),
                        ("validation", ["Wind.wav"]), ("evaluation", ["Birds.wav"])):
        _csv(tmp_path / f"clotho_captions_{name}.csv", head,
             [[f, *(f"{f} caption {i}" for i in range(1, 6))] for f in files])
        for i, f in enumerate(files):
            _audio(tmp_path / name / f, 0.5 + i * 0.25, rate=44100)
    paths = Clotho(ClothoConfig(root=str(tmp_path), val_to="test")).prepare(tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert sorted(train) == ["Dog bark", "Rain"] and sorted(test) == ["Birds", "Wind"]
    assert train["Dog bark"].captions == tuple(f"Dog bark.wav caption {i}" for i in range(1, 6))
    assert train["Rain"].duration == 0.75 and train["Rain"].sample_rate == 44100
    assert test["Wind"].labels["corpus_split"] == "validation"
    assert {e.domain for e in (*train.values(), *test.values())} == {"sound"}


MC_HEAD = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
           "author_id", "is_balanced_subset", "is_audioset_eval"]


def test_musiccaps_eval_flag_is_the_test_split_and_aspects_are_tags(tmp_path):
    _csv(tmp_path / "musiccaps-public.csv", MC_HEAD, [
        ["-0Gj8", 30, 40, "/m/0140xf", "['low quality', 'piano']", "A soft piano.", 4, False,
         True],
        ["-1LrH", 0, 10, "/m/04rlf", "[]", "Loud rock music.", 0, True, False]])
    _audio(tmp_path / "audio/-0Gj8.wav", 1.0)
    _audio(tmp_path / "audio/-1LrH.wav", 0.5)
    paths = MusicCaps(MusicCapsConfig(root=str(tmp_path))).prepare(tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert list(test) == ["-0Gj8_30"] and list(train) == ["-1LrH_0"]
    piano = test["-0Gj8_30"]
    assert piano.captions == ("A soft piano.", "low quality, piano")
    assert [c.style for c in piano.caption_info] == ["detailed", "tags"]
    assert piano.domain == "music" and piano.offset == 0.0 and piano.duration == 1.0
    assert train["-1LrH_0"].captions == ("Loud rock music.",)


def test_musiccaps_full_tracks_reads_the_segment_at_its_offset(tmp_path):
    _csv(tmp_path / "musiccaps-public.csv", MC_HEAD,
         [["abc", 2, 4, "", "['drums']", "Drums.", 1, False, False],
          ["late", 9, 19, "", "[]", "Past the end.", 1, False, False]])
    _audio(tmp_path / "audio/abc.wav", 5.0)
    _audio(tmp_path / "audio/late.wav", 5.0)
    cfg = MusicCapsConfig(root=str(tmp_path), full_tracks=True, max_missing=0.5)
    source = MusicCaps(cfg)
    entry, = read_manifest(source.prepare(tmp_path / "out")["train"])
    assert (entry.offset, entry.duration) == (2.0, 2.0)
    assert source.report["skipped"][0]["reason"].startswith("no audio after offset")


def test_song_describer_gathers_track_captions_and_finds_2min_crops(tmp_path):
    head = ["caption_id", "track_id", "caption", "is_valid_subset", "familiarity",
            "artist_id", "album_id", "path", "duration"]
    _csv(tmp_path / "song_describer.csv", head, [
        [1, 1051200, "Calm acoustic guitar.", True, 2, 7, 9, "00/1051200.mp3", 202.5],
        [2, 1051200, "A gentle folk song.", False, 1, 7, 9, "00/1051200.mp3", 202.5],
        [3, 48, "Electronic beat.", True, 0, 8, 10, "48/48.mp3", 100.0]])
    _audio(tmp_path / "audio/00/1051200.2min.mp3", 1.0, rate=16000, fmt="MP3")
    _audio(tmp_path / "audio/48/48.2min.mp3", 0.5, rate=16000, fmt="MP3")
    paths = SongDescriber(SongDescriberConfig(root=str(tmp_path))).prepare(tmp_path / "o")
    test = _by_id(paths["test"])
    assert read_manifest(paths["train"]) == []
    assert test["1051200"].captions == ("Calm acoustic guitar.", "A gentle folk song.")
    assert test["1051200"].audio.endswith("1051200.2min.mp3")
    assert test["48"].domain == "music" and test["48"].split == "test"
    valid = SongDescriber(SongDescriberConfig(root=str(tmp_path), valid_only=True))
    assert _by_id(valid.prepare(tmp_path / "v")["test"])["1051200"].captions == (
        "Calm acoustic guitar.",)


def _clotho_with_missing(tmp_path, present):
    head = ["file_name", *(f"caption_{i}" for i in range(1, 6))]
    files = [f"f{i}.wav" for i in range(10)]
    for name in ("development", "evaluation"):
        _csv(tmp_path / f"clotho_captions_{name}.csv", head, [[f, *"abcde"] for f in files])
        for f in files[:present]:
            _audio(tmp_path / name / f, 0.25)


def test_missing_audio_within_budget_is_skipped_and_reported(tmp_path):
    _clotho_with_missing(tmp_path, present=8)
    source = Clotho(ClothoConfig(root=str(tmp_path), max_missing=0.2))
    paths = source.prepare(tmp_path / "out")
    assert len(read_manifest(paths["train"])) == 8
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["skipped_count"] == 4 and report["budget"] == 4
    assert {s["id"] for s in report["skipped"]} == {"f8", "f9"}
    assert all(s["reason"] == "missing" for s in report["skipped"])
    assert report["splits"]["test"]["clips"] == 8 and report["splits"]["test"]["captions"] == 40
    assert report["splits"]["test"]["hours"] == pytest.approx(8 * 0.25 / 3600, abs=1e-6)
    (tmp_path / "development" / "f0.wav").unlink()  # a second prepare reuses the first's files
    assert Clotho(ClothoConfig(root=str(tmp_path), max_missing=0.2)).prepare(
        tmp_path / "out") == paths
    assert len(read_manifest(paths["train"])) == 8


def test_missing_audio_over_budget_names_the_first_files(tmp_path):
    _clotho_with_missing(tmp_path, present=7)
    with pytest.raises(DataError, match=r"6 of 20 clips.*budget of 4.*development/f7.wav"):
        Clotho(ClothoConfig(root=str(tmp_path), max_missing=0.2)).prepare(tmp_path / "out")
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_missing_metadata_file_and_column_are_named(tmp_path):
    with pytest.raises(DataError, match="musiccaps-public.csv"):
        MusicCaps(MusicCapsConfig(root=str(tmp_path))).prepare(tmp_path / "out")
    _csv(tmp_path / "train.csv", ["youtube_id", "caption"], [["a", "b"]])
    with pytest.raises(DataError, match="audiocap_id, start_time missing"):
        AudioCaps(AudioCapsConfig(root=str(tmp_path))).prepare(tmp_path / "out")


def _json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_wavcaps_subset_json_ids_without_suffix_and_flac_audio(tmp_path):
    _json(tmp_path / "json_files/AudioSet_SL/as_final.json", {"data": [
        {"id": "Yb0RFKhbpFJA.wav", "caption": "Wind blows and a dog barks.",
         "audio": "wav_path", "duration": 10.0},
        {"id": "Y-0wJ2D2bvVM.wav", "caption": "Rain falls.", "audio": "wav_path",
         "duration": 10.0}]})
    _json(tmp_path / "json_files/SoundBible/sb_final.json", {"data": [
        {"id": "1605", "title": "Bell", "caption": "A bell rings.", "duration": 3.2}]})
    _audio(tmp_path / "audio/AudioSet_SL/Yb0RFKhbpFJA.flac", 1.0, rate=32000)
    _audio(tmp_path / "audio/AudioSet_SL/Y-0wJ2D2bvVM.wav", 0.5)  # another suffix is tried
    _audio(tmp_path / "audio/SoundBible/1605.flac", 0.25)
    src = WavCaps(WavCapsConfig(root=str(tmp_path), subset="AudioSet_SL"))
    paths = src.prepare(tmp_path / "as")
    train = _by_id(paths["train"])
    assert read_manifest(paths["test"]) == []
    assert sorted(train) == ["Y-0wJ2D2bvVM", "Yb0RFKhbpFJA"]
    a = train["Yb0RFKhbpFJA"]
    assert a.captions == ("Wind blows and a dog barks.",) and a.duration == 1.0
    assert a.sample_rate == 32000 and a.audio.endswith("Yb0RFKhbpFJA.flac")
    assert a.corpus == "wavcaps" and a.domain == "sound" and a.labels["subset"] == "AudioSet_SL"
    assert a.caption_info[0].source == "chatgpt"
    assert train["Y-0wJ2D2bvVM"].duration == 0.5
    sb = _by_id(WavCaps(WavCapsConfig(root=str(tmp_path), subset="SoundBible")).prepare(
        tmp_path / "sb")["train"])
    assert list(sb) == ["1605"] and sb["1605"].captions == ("A bell rings.",)


def test_wavcaps_rejects_a_json_without_data_list(tmp_path):
    _json(tmp_path / "json_files/FreeSound/fsd_final.json", [{"id": "1", "caption": "x"}])
    with pytest.raises(DataError, match=r"fsd_final.json.*data"):
        WavCaps(WavCapsConfig(root=str(tmp_path), subset="FreeSound")).prepare(tmp_path / "o")


def test_audiosetcaps_source_csv_over_user_audio_with_missing_budget(tmp_path):
    _csv(tmp_path / "VGGSound_AudioSetCaps_caption.csv", ["id", "caption"], [
        ["---g-f_I2yQ_1", "A man speaks while a car engine idles."],
        ["--0PQM4-hqg_30.wav", "Birds chirp in a forest."],
        ["gone_0", "Never downloaded."]])
    _csv(tmp_path / "AudioSetCaps_caption.csv", ["id", "caption"], [["aset_1", "Music."]])
    _audio(tmp_path / "audio/vggsound/---g-f_I2yQ_1.wav", 1.0)
    _audio(tmp_path / "audio/vggsound/--0PQM4-hqg_30.flac", 0.5)
    _audio(tmp_path / "audio/audioset/aset_1.wav", 0.25)
    with pytest.raises(DataError, match=r"1 of 3 clips.*budget of 0.*gone_0.wav"):
        AudioSetCaps(AudioSetCapsConfig(root=str(tmp_path), source="vggsound",
                                        max_missing=0.0)).prepare(tmp_path / "strict")
    src = AudioSetCaps(AudioSetCapsConfig(root=str(tmp_path), source="vggsound",
                                          max_missing=0.5))
    train = _by_id(src.prepare(tmp_path / "vgg")["train"])
    assert sorted(train) == ["---g-f_I2yQ_1", "--0PQM4-hqg_30"]
    assert train["---g-f_I2yQ_1"].captions == ("A man speaks while a car engine idles.",)
    assert train["--0PQM4-hqg_30"].duration == 0.5
    assert train["--0PQM4-hqg_30"].labels["audio_source"] == "vggsound"
    assert train["--0PQM4-hqg_30"].corpus == "audiosetcaps"
    assert [s["id"] for s in src.report["skipped"]] == ["gone_0"]
    aset = _by_id(AudioSetCaps(AudioSetCapsConfig(root=str(tmp_path), source="audioset"))
                  .prepare(tmp_path / "as")["train"])
    assert list(aset) == ["aset_1"]


def test_jamendomaxcaps_windows_become_offset_segments(tmp_path):
    _jsonl(tmp_path / "final_caption30sec.jsonl", [
        {"id": "1990389", "caption": "Calm ambient pads.", "start_time": 0, "end_time": 2},
        {"id": "1990389", "caption": "A piano enters.", "start_time": 2, "end_time": 4},
        {"id": "77", "caption": "Fast drums.", "start_time": 0, "end_time": 30}])
    _audio(tmp_path / "mp3_files/1990389.mp3", 5.0, rate=16000, fmt="MP3")
    _audio(tmp_path / "mp3_files/77.mp3", 1.0, rate=16000, fmt="MP3")
    train = _by_id(JamendoMaxCaps(JamendoMaxCapsConfig(root=str(tmp_path))).prepare(
        tmp_path / "out")["train"])
    assert sorted(train) == ["1990389_0", "1990389_2", "77_0"]
    second = train["1990389_2"]
    assert (second.offset, second.duration) == (2.0, 2.0)
    assert second.captions == ("A piano enters.",) and second.labels["track_id"] == "1990389"
    assert second.domain == "music" and second.corpus == "jamendomaxcaps"
    assert train["77_0"].duration == pytest.approx(1.0, abs=0.05)  # the file is shorter


def test_jamendomaxcaps_bad_row_names_file_and_line(tmp_path):
    _jsonl(tmp_path / "final_caption30sec.jsonl", [
        {"id": "1", "caption": "x", "start_time": 0, "end_time": 30}, {"id": "2"}])
    with pytest.raises(DataError, match=r"final_caption30sec.jsonl:2"):
        JamendoMaxCaps(JamendoMaxCapsConfig(root=str(tmp_path))).prepare(tmp_path / "o")


def _psc_row(rel, texts, **extra):
    return {"source": "voxceleb", "relative_audio_path": rel, "text_description": texts,
            "transcription": "hello there", "speakerid": "id10001", "gender": "male",
            **extra}


def test_paraspeechcaps_splits_description_lists_and_relative_paths(tmp_path):
    data = tmp_path / "data"
    _jsonl(data / "train_base.jsonl", [_psc_row("voxceleb/id10001/a.wav",
                                               ["A man speaks calmly.", "Calm male voice."])])
    _jsonl(data / "train_scaled-00000-of-00002.jsonl", [_psc_row("emilia/b.wav", ["Fast."])])
    _jsonl(data / "train_scaled-00001-of-00002.jsonl", [_psc_row("emilia/c.wav", [])])
    _jsonl(data / "dev.jsonl", [_psc_row("ears/p001/d.wav", ["Whispered."])])
    _jsonl(data / "holdout.jsonl", [_psc_row("expresso/e.wav", ["Happy female voice."],
                                             gender="female")])
    for rel, sec in (("voxceleb/id10001/a.wav", 1.0), ("emilia/b.wav", 0.5),
                     ("emilia/c.wav", 0.5), ("ears/p001/d.wav", 0.25),
                     ("expresso/e.wav", 0.75)):
        _audio(tmp_path / "audio" / rel, sec, rate=16000)
    recipe = ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), val_to="test",
                                                 max_missing=0.2))
    paths = recipe.prepare(tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert sorted(train) == ["emilia/b", "voxceleb/id10001/a"]  # c has no description
    assert [(s["id"], s["reason"]) for s in recipe.report["skipped"]] == [
        ("emilia/c", "no caption")]  # and is counted, not dropped unseen
    assert sorted(test) == ["ears/p001/d", "expresso/e"]
    a = train["voxceleb/id10001/a"]
    assert a.captions == ("A man speaks calmly.", "Calm male voice.") and a.duration == 1.0
    assert a.domain == "speech" and a.labels["corpus_split"] == "train_base"
    assert a.labels["speakerid"] == "id10001" and a.audio.endswith("audio/voxceleb/id10001/a.wav")
    assert test["expresso/e"].labels["gender"] == "female"
    assert test["ears/p001/d"].labels["corpus_split"] == "dev"
    only = ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), splits=["holdout"]))
    assert read_manifest(only.prepare(tmp_path / "h")["train"]) == []


def test_paraspeechcaps_reads_the_published_parquet_shards(tmp_path):
    """The dataset as published: ``data/{split}-0000K-of-0000N.parquet`` with
    ``text_description`` a list<string> column beside tag lists and numeric columns."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    data = tmp_path / "data"
    data.mkdir()

    def shard(name, rows):
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        types = {"text_description": pa.list_(pa.string()), "intrinsic_tags": pa.list_(pa.string()),
                 "duration": pa.float32()}
        table = pa.table({k: pa.array(v, type=types.get(k)) for k, v in columns.items()})
        pq.write_table(table, str(data / name))

    def row(rel, texts, **extra):
        return _psc_row(rel, texts, intrinsic_tags=["calm", "deep"], duration=1.5, **extra)

    shard("train_base-00000-of-00002.parquet", [
        row("voxceleb/id10001/a.wav", ["A man speaks calmly.", "Calm male voice."]),
        row("voxceleb/id10001/b.wav", ["  "])])  # only blank descriptions: no caption
    shard("train_base-00001-of-00002.parquet", [row("emilia/c.wav", ["Fast speech."])])
    shard("holdout-00000-of-00001.parquet", [row("expresso/e.wav", ["Happy female voice."],
                                                 gender="female")])
    (data / "train_base.jsonl").write_text("not read: the Parquet shards come first\n")
    for rel in ("voxceleb/id10001/a.wav", "voxceleb/id10001/b.wav", "emilia/c.wav",
                "expresso/e.wav"):
        _audio(tmp_path / "audio" / rel, 0.5, rate=16000)
    recipe = ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path),
                                                 splits=["train_base", "holdout"],
                                                 max_missing=0.5))
    paths = recipe.prepare(tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert sorted(train) == ["emilia/c", "voxceleb/id10001/a"] and list(test) == ["expresso/e"]
    assert train["voxceleb/id10001/a"].captions == ("A man speaks calmly.", "Calm male voice.")
    assert train["emilia/c"].labels["corpus_split"] == "train_base"
    assert test["expresso/e"].labels["gender"] == "female"
    skipped = recipe.report["skipped"]
    assert [(s["id"], s["reason"]) for s in skipped] == [("voxceleb/id10001/b", "no caption")]


def test_paraspeechcaps_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    import sys

    data = tmp_path / "data"
    data.mkdir()
    (data / "dev-00000-of-00001.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match=r"dev-00000-of-00001.parquet.*alp-data\[parquet\]"):
        ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), splits=["dev"],
                                            val_to="test")).prepare(tmp_path / "o")


def test_paraspeechcaps_missing_split_file_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"no holdout-\*.parquet or holdout.jsonl"):
        ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), splits=["holdout"])).prepare(
            tmp_path / "o")


def test_new_recipes_are_registered_data_sources():
    from alp_data.plugin import alp_data_sources

    names = {r.name for r in alp_data_sources()}
    assert {"wavcaps", "audiosetcaps", "jamendomaxcaps", "paraspeechcaps", "lhotse"} <= names


def test_wavcaps_blacklists_apply_to_their_own_subset_and_are_reported(tmp_path):
    """WavCaps's blacklist files (``{"AudioSet": ["Y<ytid>.wav"], "FreeSound": ["<id>"]}``):
    AudioSet ids leave the AudioSet_SL subset, FreeSound numbers leave FreeSound only (the same
    number in SoundBible stays), and every clip left out is in the report with its file, not
    counted against the missing-audio budget."""
    _json(tmp_path / "json_files/AudioSet_SL/as_final.json", {"data": [
        {"id": "Yb0RFKhbpFJA.wav", "caption": "Wind blows."},
        {"id": "Y-0wJ2D2bvVM.wav", "caption": "Rain falls."}]})
    _json(tmp_path / "json_files/FreeSound/fsd_final.json", {"data": [
        {"id": "1605", "caption": "A door creaks."}, {"id": "77", "caption": "Birds sing."}]})
    _json(tmp_path / "json_files/SoundBible/sb_final.json", {"data": [
        {"id": "1605", "caption": "A bell rings."}]})
    for path in ("AudioSet_SL/Yb0RFKhbpFJA", "AudioSet_SL/Y-0wJ2D2bvVM", "FreeSound/1605",
                 "FreeSound/77", "SoundBible/1605"):
        _audio(tmp_path / f"audio/{path}.flac", 0.25)
    _json(tmp_path / "json_files/blacklist/blacklist_exclude_test_ac.json",
          {"AudioSet": ["Yb0RFKhbpFJA.wav"], "FreeSound": ["1605"]})
    _json(tmp_path / "extra.json", {"FreeSound": [77]})  # ids may be numbers
    listed = "json_files/blacklist/blacklist_exclude_test_ac.json"

    def prepare(subset, blacklist):
        src = WavCaps(WavCapsConfig(root=str(tmp_path), subset=subset, blacklist=blacklist,
                                    max_missing=0))
        train = _by_id(src.prepare(tmp_path / f"out-{subset}-{len(blacklist)}")["train"])
        report = json.loads((tmp_path / f"out-{subset}-{len(blacklist)}" /
                             "prepare_report.json").read_text())
        return sorted(train), report

    ids, report = prepare("AudioSet_SL", [listed])
    assert ids == ["Y-0wJ2D2bvVM"] and report["excluded_count"] == 1
    assert report["excluded"] == [{"id": "Yb0RFKhbpFJA",
                                   "reason": f"blacklisted in {tmp_path / listed}"}]
    assert report["skipped_count"] == 0 and report["listed"] == 1
    ids, report = prepare("FreeSound", [listed, str(tmp_path / "extra.json")])
    assert ids == [] and [e["id"] for e in report["excluded"]] == ["1605", "77"]
    assert report["excluded"][1]["reason"].endswith("extra.json")
    ids, report = prepare("SoundBible", [listed])
    assert ids == ["1605"] and report["excluded"] == []
    _, report = prepare("AudioSet_SL", [])
    assert "excluded" not in report  # no blacklist given: nothing to report


@pytest.mark.parametrize(("content", "match"), [
    (None, "blacklist not found"), ("{not json", "not a UTF-8 JSON"),
    ('["Yb0RFKhbpFJA.wav"]', "expected a WavCaps blacklist"),
    ('{"AudioSet": "Yb0RFKhbpFJA.wav"}', "expected a WavCaps blacklist")])
def test_wavcaps_bad_blacklist_names_the_file(tmp_path, content, match):
    _json(tmp_path / "json_files/AudioSet_SL/as_final.json", {"data": [
        {"id": "Yb0RFKhbpFJA.wav", "caption": "Wind blows."}]})
    if content is not None:
        (tmp_path / "bl.json").write_text(content, encoding="utf-8")
    src = WavCaps(WavCapsConfig(root=str(tmp_path), subset="AudioSet_SL", blacklist=["bl.json"]))
    with pytest.raises(DataError, match=match) as err:
        src.prepare(tmp_path / "o")
    assert "bl.json" in str(err.value)


def test_a_relative_root_gives_manifests_whose_audio_resolves(tmp_path, monkeypatch):
    head = ["audiocap_id", "youtube_id", "start_time", "caption"]
    _csv(tmp_path / "corpus/train.csv", head, [[1, "aaa", 30, "a dog barks"]])
    _csv(tmp_path / "corpus/test.csv", head, [[2, "bbb", 0, "rain"]])
    _audio(tmp_path / "corpus/audio/train/aaa_30.wav", 0.5)
    _audio(tmp_path / "corpus/audio/test/bbb_0.wav", 0.5)
    monkeypatch.chdir(tmp_path)
    paths = AudioCaps(AudioCapsConfig(root="corpus")).prepare("out/ac")
    monkeypatch.chdir("/")  # a manifest is read from anywhere
    (entry,) = read_manifest(str(tmp_path / paths["train"]))
    assert entry.audio == str(tmp_path / "corpus/audio/train/aaa_30.wav")
    assert sf.info(entry.audio).duration == 0.5


def test_metadata_rows_that_make_no_clip_are_skipped_counted_and_named(tmp_path):
    head = ["file_name", *(f"caption_{i}" for i in range(1, 6))]
    path = tmp_path / "clotho_captions_development.csv"
    _csv(path, head, [["a.wav", *(f"a {i}" for i in range(5))],
                      ["b.wav", "", "", "", "", ""],  # no caption at all
                      ["a.wav", *(f"again {i}" for i in range(5))],  # the same file again
                      ["c.wav", "only one field"]])  # a row cut short
    for name in "abc":
        _audio(tmp_path / "development" / f"{name}.wav", 0.5)
    _csv(tmp_path / "clotho_captions_evaluation.csv", head,
         [["d.wav", *(f"d {i}" for i in range(5))]])
    _audio(tmp_path / "evaluation/d.wav", 0.5)
    recipe = Clotho(ClothoConfig(root=str(tmp_path), max_missing=0.6))
    paths = recipe.prepare(tmp_path / "out")
    assert [e.id for e in read_manifest(paths["train"])] == ["a"]  # readable: no empty clip
    assert read_manifest(paths["train"])[0].captions[0] == "a 0"  # the first row is kept
    skipped = {(s["id"], s["path"].rsplit("/", 1)[-1], s["reason"])
               for s in recipe.report["skipped"]}
    assert skipped == {("", "clotho_captions_development.csv:5",
                        "row lacks column(s) caption_2, caption_3, caption_4, caption_5"),
                       ("b", "b.wav", "no caption"),
                       ("a", "a.wav", "id listed again in split train (its first row is kept)")}
    assert recipe.report["listed"] == 5 and recipe.report["skipped_count"] == 3
    with pytest.raises(DataError, match=r"3 of 5 clips were skipped .*budget of 2"):
        Clotho(ClothoConfig(root=str(tmp_path), max_missing=0.5)).prepare(tmp_path / "strict")


def test_bad_rows_of_json_metadata_are_counted_not_fatal(tmp_path):
    _jsonl(tmp_path / "final_caption30sec.jsonl", [
        {"id": "1", "caption": "Calm pads.", "start_time": 0, "end_time": 1},
        {"id": "2"}, "not an object", {"id": "3", "caption": "", "start_time": 0,
                                       "end_time": 1}])
    _audio(tmp_path / "mp3_files/1.mp3", 1.0, rate=16000, fmt="MP3")
    recipe = JamendoMaxCaps(JamendoMaxCapsConfig(root=str(tmp_path), max_missing=0.75))
    assert list(_by_id(recipe.prepare(tmp_path / "out")["train"])) == ["1_0"]
    lines = sorted(s["path"].rsplit(":", 1)[-1] for s in recipe.report["skipped"])
    assert lines == ["2", "3", "4"]


def test_credentials_in_a_root_url_never_reach_errors_or_reports(tmp_path):
    import fsspec

    root = "memory://AKIAEXAMPLE:SuperSecret123@bucket/audiocaps"
    with pytest.raises(DataError) as err:
        AudioCaps(AudioCapsConfig(root=root)).prepare(tmp_path / "o1")
    assert "SuperSecret123" not in str(err.value) and "audiocaps/train.csv" in str(err.value)
    head = "audiocap_id,youtube_id,start_time,caption\n"
    with fsspec.open(f"{root}/train.csv", "wt") as handle:
        handle.write(head + "1,aaa,30,a dog barks\n2,bbb,0,rain\n")
    with fsspec.open(f"{root}/test.csv", "wt") as handle:
        handle.write(head)
    recipe = AudioCaps(AudioCapsConfig(root=root, max_missing=1.0))
    recipe.prepare(tmp_path / "o2")
    text = (tmp_path / "o2/prepare_report.json").read_text()
    assert "SuperSecret123" not in text and "SuperSecret123" not in json.dumps(recipe.report)
    assert recipe.report["skipped_count"] == 2  # no audio there: both listed, scrubbed
    with pytest.raises(DataError) as err:
        AudioCaps(AudioCapsConfig(root=root, max_missing=0.0)).prepare(tmp_path / "o3")
    assert "SuperSecret123" not in str(err.value) and "aaa_30" in str(err.value)
