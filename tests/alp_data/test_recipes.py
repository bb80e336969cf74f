"""Corpus recipes on small files written in each corpus's published layout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import DataError
from alp_data.manifest import read_manifest
from alp_data.recipes.audiocaps import AudioCaps, AudioCapsConfig
from alp_data.recipes.clotho import Clotho, ClothoConfig
from alp_data.recipes.musiccaps import MusicCaps, MusicCapsConfig
from alp_data.recipes.song_describer import SongDescriber, SongDescriberConfig


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
