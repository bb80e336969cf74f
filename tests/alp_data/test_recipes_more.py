"""WavCaps, AudioSetCaps, JamendoMaxCaps and ParaSpeechCaps recipes on small files written in
each corpus's published layout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import DataError
from alp_data.manifest import read_manifest
from alp_data.recipes.audiosetcaps import AudioSetCaps, AudioSetCapsConfig
from alp_data.recipes.jamendomaxcaps import JamendoMaxCaps, JamendoMaxCapsConfig
from alp_data.recipes.paraspeechcaps import ParaSpeechCaps, ParaSpeechCapsConfig
from alp_data.recipes.wavcaps import WavCaps, WavCapsConfig


def _audio(path, seconds, rate=8000, channels=1, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(-0.1, 0.1, (int(seconds * rate), channels))
    sf.write(str(path), data.astype("float32"), rate, format=fmt)


def _json(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _by_id(path):
    return {e.id: e for e in read_manifest(path)}


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


def _csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


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
    paths = ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), val_to="test")).prepare(
        tmp_path / "out")
    train, test = _by_id(paths["train"]), _by_id(paths["test"])
    assert sorted(train) == ["emilia/b", "voxceleb/id10001/a"]  # c has no description
    assert sorted(test) == ["ears/p001/d", "expresso/e"]
    a = train["voxceleb/id10001/a"]
    assert a.captions == ("A man speaks calmly.", "Calm male voice.") and a.duration == 1.0
    assert a.domain == "speech" and a.labels["corpus_split"] == "train_base"
    assert a.labels["speakerid"] == "id10001" and a.audio.endswith("audio/voxceleb/id10001/a.wav")
    assert test["expresso/e"].labels["gender"] == "female"
    assert test["ears/p001/d"].labels["corpus_split"] == "dev"
    only = ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), splits=["holdout"]))
    assert read_manifest(only.prepare(tmp_path / "h")["train"]) == []


def test_paraspeechcaps_missing_split_file_is_named(tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"no holdout-\*.parquet or holdout.jsonl"):
        ParaSpeechCaps(ParaSpeechCapsConfig(root=str(tmp_path), splits=["holdout"])).prepare(
            tmp_path / "o")


def test_new_recipes_are_registered_data_sources():
    from alp_data.plugin import alp_data_sources

    names = {r.name for r in alp_data_sources()}
    assert {"wavcaps", "audiosetcaps", "jamendomaxcaps", "paraspeechcaps", "lhotse"} <= names
