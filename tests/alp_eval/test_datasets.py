"""The benchmark loaders on tiny copies written here in each benchmark's real on-disk layout."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import ConfigError, DataError, UnknownComponentError
from alp_eval.datasets import (
    BENCHMARKS,
    Event,
    ProtocolRound,
    event_roll,
    load_benchmark,
    load_crema_d,
    load_desed,
    load_esc50,
    load_fsd50k,
    load_gtzan,
    load_magnatagatune,
    load_nsynth_family,
    load_nsynth_pitch,
    load_speech_commands,
    load_urbansound8k,
    load_vggsound,
    load_voxceleb1,
    load_voxlingua107,
    manifest_rows,
    to_manifests,
    write_manifests,
)
from alp_eval.datasets.music import GTZAN_GENRES

RATE = 8000


def _audio(path, seconds=0.05, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(len(path.name)).uniform(-0.1, 0.1, int(seconds * RATE))
    sf.write(str(path), data.astype("float32"), RATE, format=fmt)


def _table(path, header, rows, delimiter=",", quoting=csv.QUOTE_MINIMAL):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, quoting=quoting)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def _lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _by_id(bench):
    return {clip.id: clip for clip in bench.clips}


# ---------------------------------------------------------------- ESC-50 (and shared checks)

ESC_ROWS = [  # filename, fold, target, category
    ("1-100032-A-2.wav", 1, 2, "dog"), ("1-100038-A-0.wav", 1, 0, "rain"),
    ("2-10000-A-1.wav", 2, 1, "rooster"), ("3-1000-A-2.wav", 3, 2, "dog"),
    ("4-2000-B-0.wav", 4, 0, "rain"), ("5-3000-A-1.wav", 5, 1, "rooster"),
    ("5-4000-A-0.wav", 5, 0, "rain"),
]


def _esc50(root, rows=ESC_ROWS, missing=(), header=("filename", "fold", "target", "category",
                                                     "esc10", "src_file", "take")):
    _table(root / "meta" / "esc50.csv", header,
           [(f, fold, t, c, "False", f.split("-")[1], "A")[:len(header)]
            for f, fold, t, c in rows])
    for f, *_ in rows:
        if f not in missing:
            _audio(root / "audio" / f)
    return root


def test_esc50_classes_folds_labels_and_protocol(tmp_path):
    bench = load_esc50(_esc50(tmp_path / "ESC-50-master"))
    assert (bench.name, bench.domain, bench.task) == ("esc50", "sound", "multiclass")
    assert bench.classes == ("rain", "rooster", "dog")  # ordered by target id
    assert bench.counts() == {"1": 2, "2": 1, "3": 1, "4": 1, "5": 2}
    clips = _by_id(bench)
    assert clips["3-1000-A-2"].labels == ("dog",)
    assert clips["3-1000-A-2"].fold_or_split == "3"
    assert clips["3-1000-A-2"].path == str(tmp_path / "ESC-50-master/audio/3-1000-A-2.wav")
    assert len(bench.protocol) == 5
    assert bench.protocol[2] == ProtocolRound(("1", "2", "4", "5"), (), ("3",))
    roles = bench.round_clips(4)
    assert sorted(c.id for c in roles["test"]) == ["5-3000-A-1", "5-4000-A-0"]
    assert len(roles["train"]) == 5 and roles["val"] == []
    assert bench.skipped == () and bench.listed == 7
    with pytest.raises(ConfigError, match="round 5 does not exist; valid: 0..4"):
        bench.round_clips(5)


def test_missing_audio_is_skipped_within_the_budget_and_fails_past_it(tmp_path):
    root = _esc50(tmp_path / "esc", missing=("5-4000-A-0.wav",))
    bench = load_esc50(root, max_missing=0.2)  # budget floor(0.2 * 7) = 1
    assert len(bench.clips) == 6 and bench.listed == 7
    (skip,) = bench.skipped
    assert (skip.id, skip.reason, skip.source) == ("5-4000-A-0", "missing",
                                                   "meta/esc50.csv:8")
    assert skip.path.endswith("audio/5-4000-A-0.wav")
    assert bench.counts()["5"] == 1
    with pytest.raises(DataError, match=r"1 of 7 listed clips .* budget of 0 .*5-4000-A-0\.wav"):
        load_esc50(root, max_missing=0.0)
    with pytest.raises(ConfigError, match="max_missing=1.5"):
        load_esc50(root, max_missing=1.5)


def test_a_fold_without_clips_is_an_error(tmp_path):
    root = _esc50(tmp_path / "esc", rows=[r for r in ESC_ROWS if r[1] != 4])
    with pytest.raises(DataError, match="no clips in 4"):
        load_esc50(root)


def test_wrong_layout_names_the_expected_file_and_a_likelier_root(tmp_path):
    root = tmp_path / "ESC-50-master"
    _audio(root / "audio" / "1-1-A-0.wav")
    (root / "README.md").write_text("x")
    with pytest.raises(DataError) as err:
        load_esc50(root)
    assert f"ESC-50: expected file meta/esc50.csv under {root} (found: README.md, audio/)" in (
        str(err.value))
    _esc50(root)
    with pytest.raises(DataError, match=f"did you mean root={root}"):
        load_esc50(tmp_path)
    with pytest.raises(DataError, match="root folder .*nowhere does not exist"):
        load_esc50(tmp_path / "nowhere")


def test_a_missing_column_names_file_column_and_columns_present(tmp_path):
    root = _esc50(tmp_path / "esc", header=("filename", "fold", "target"))
    with pytest.raises(DataError) as err:
        load_esc50(root)
    text = str(err.value)
    assert "esc50.csv: column(s) category missing; columns present: filename, fold, target" in text


def test_esc50_bad_fold_and_conflicting_class_ids_name_the_line(tmp_path):
    root = _esc50(tmp_path / "a", rows=[*ESC_ROWS, ("9-1-A-0.wav", 6, 0, "rain")])
    with pytest.raises(DataError, match=r"esc50.csv:9: fold '6'; accepted: 1, 2, 3, 4, 5"):
        load_esc50(root)
    root = _esc50(tmp_path / "b", rows=[*ESC_ROWS, ("5-9-A-0.wav", 5, 0, "thunder")])
    with pytest.raises(DataError, match=r"esc50.csv:9: class id 0 is 'thunder' here but "
                                        r"'rain' on line 3"):
        load_esc50(root)


FIRST_EXPECTED = {
    "esc50": "file meta/esc50.csv", "urbansound8k": "file metadata/UrbanSound8K.csv",
    "fsd50k": "file FSD50K.ground_truth/vocabulary.csv", "vggsound": "file vggsound.csv",
    "voxceleb1": "file iden_split.txt", "crema-d": "folder AudioWAV/",
    "speech-commands-v2": "file validation_list.txt", "voxlingua107": "folder dev/",
    "gtzan": "folder genres/", "nsynth-family": "file nsynth-train/examples.json",
    "nsynth-pitch": "file nsynth-train/examples.json",
    "magnatagatune": "file annotations_final.csv",
    "desed": "file metadata/train/synthetic21_train/soundscapes.tsv",
}


@pytest.mark.parametrize("name", sorted(FIRST_EXPECTED))
def test_every_loader_names_what_it_expected_in_an_empty_folder(tmp_path, name):
    with pytest.raises(DataError) as err:
        load_benchmark(name, tmp_path)
    assert f"expected {FIRST_EXPECTED[name]} under {tmp_path} (found: an empty folder)" in (
        str(err.value))


def test_layout_error_lists_the_deepest_existing_folder(tmp_path):
    root = _fsd50k(tmp_path / "FSD50K")
    (root / "FSD50K.ground_truth" / "dev.csv").unlink()
    with pytest.raises(DataError, match=r"expected file FSD50K.ground_truth/dev.csv under .* "
                                        r"\(found in FSD50K.ground_truth/: eval.csv, "
                                        r"vocabulary.csv\)"):
        load_fsd50k(root)


# ---------------------------------------------------------------- UrbanSound8K

def test_urbansound8k_ten_folds_in_fold_folders(tmp_path):
    root = tmp_path / "UrbanSound8K"
    rows = [(f"{100 + k}-0-0-0.wav", 100 + k, 0.0, 4.0, 1, k, k % 3,
             ("air_conditioner", "car_horn", "children_playing")[k % 3]) for k in range(1, 11)]
    rows.append(("999-1-0-0.wav", 999, 0.0, 4.0, 2, 3, 1, "car_horn"))
    _table(root / "metadata" / "UrbanSound8K.csv",
           ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"),
           rows)
    for row in rows:
        _audio(root / "audio" / f"fold{row[5]}" / row[0])
    bench = load_urbansound8k(root)
    assert bench.classes == ("air_conditioner", "car_horn", "children_playing")
    assert bench.counts() == {**{str(k): 1 for k in range(1, 11)}, "3": 2}
    assert len(bench.protocol) == 10 and bench.protocol[9].test == ("10",)
    clip = _by_id(bench)["999-1-0-0"]
    assert clip.labels == ("car_horn",) and clip.path.endswith("audio/fold3/999-1-0-0.wav")


# ---------------------------------------------------------------- FSD50K

def _fsd50k(root, eval_label="Dog"):
    gt = root / "FSD50K.ground_truth"
    _table(gt / "vocabulary.csv", None, [(0, "Bark", "/m/05tny_"), (1, "Dog", "/m/0bt9lr"),
                                         (2, "Animal", "/m/0jbk"), (3, "Music", "/m/04rlf")])
    dev = [("64760", "Bark,Dog,Animal", "/m/05tny_,/m/0bt9lr,/m/0jbk", "train"),
           ("16399", "Music", "/m/04rlf", "train"), ("16401", "Dog,Animal", "m", "val")]
    ev = [("37199", f"{eval_label},Animal", "m"), ("175151", "Music", "/m/04rlf")]
    _table(gt / "dev.csv", ("fname", "labels", "mids", "split"), dev)
    _table(gt / "eval.csv", ("fname", "labels", "mids"), ev)
    for fname, *_ in dev:
        _audio(root / "FSD50K.dev_audio" / f"{fname}.wav")
    for fname, *_ in ev:
        _audio(root / "FSD50K.eval_audio" / f"{fname}.wav")
    return root


def test_fsd50k_multilabel_sets_and_splits(tmp_path):
    bench = load_fsd50k(_fsd50k(tmp_path))
    assert bench.task == "multilabel" and bench.classes == ("Bark", "Dog", "Animal", "Music")
    assert bench.counts() == {"train": 2, "val": 1, "test": 2}
    clips = _by_id(bench)
    assert set(clips["64760"].labels) == {"Bark", "Dog", "Animal"}
    assert clips["16401"].fold_or_split == "val"
    assert clips["37199"].path.endswith("FSD50K.eval_audio/37199.wav")
    assert bench.protocol == (ProtocolRound(("train",), ("val",), ("test",)),)


def test_fsd50k_label_outside_the_vocabulary_names_file_and_line(tmp_path):
    with pytest.raises(DataError, match=r"eval.csv:2: label 'Cat' is not one of the 4 classes"):
        load_fsd50k(_fsd50k(tmp_path, eval_label="Cat"))


# ---------------------------------------------------------------- VGGSound

def test_vggsound_headerless_csv_name_format_and_missing_downloads(tmp_path):
    root = tmp_path / "vggsound"
    rows = [("---g-f_I2yQ", 1, "people marching", "test"),
            ("--0PQM4-hqg", 30, "waterfall burbling", "train"),
            ("-0jeONf82dE", 21, "vehicle horn, car horn, honking", "train"),
            ("gone1234567", 0, "waterfall burbling", "train")]
    _table(root / "vggsound.csv", None, rows)
    _audio(root / "audio" / "test" / "---g-f_I2yQ_000001.wav")
    _audio(root / "audio" / "--0PQM4-hqg_000030.flac")
    _audio(root / "audio" / "-0jeONf82dE_000021.wav")
    bench = load_vggsound(root)
    assert bench.classes == ("people marching", "vehicle horn, car horn, honking",
                             "waterfall burbling")
    assert bench.counts() == {"train": 2, "test": 1}
    clips = _by_id(bench)
    assert clips["-0jeONf82dE_000021"].labels == ("vehicle horn, car horn, honking",)
    assert clips["--0PQM4-hqg_000030"].path.endswith(".flac")
    assert [(s.id, s.reason) for s in bench.skipped] == [("gone1234567_000000", "missing")]
    assert bench.protocol == (ProtocolRound(("train",), (), ("test",)),)
    with pytest.raises(DataError, match="over the budget of 0"):
        load_vggsound(root, max_missing=0.1)


# ---------------------------------------------------------------- VoxCeleb1

def test_voxceleb1_iden_split_codes_and_the_two_archives(tmp_path):
    root = tmp_path / "voxceleb1"
    lines = ["1 id10001/1zcIwhmdeo4/00001.wav", "1 id10001/1zcIwhmdeo4/00002.wav",
             "2 id10001/7w0IBEWc9Qw/00001.wav", "3 id10001/7w0IBEWc9Qw/00002.wav",
             "1 id10270/5r0dWxy17C8/00001.wav", "3 id10270/5r0dWxy17C8/00002.wav"]
    _lines(root / "iden_split.txt", lines)
    for line in lines:
        rel = line.split()[1]
        part = "vox1_test_wav" if rel.startswith("id10270") else "vox1_dev_wav"
        _audio(root / part / "wav" / rel)
    bench = load_voxceleb1(root)
    assert bench.classes == ("id10001", "id10270")
    assert bench.counts() == {"train": 3, "val": 1, "test": 2}
    clip = _by_id(bench)["id10270/5r0dWxy17C8/00002"]
    assert clip.labels == ("id10270",) and clip.fold_or_split == "test"
    assert "vox1_test_wav/wav/id10270" in clip.path
    _lines(root / "iden_split.txt", [*lines, "4 id10001/x/00001.wav"])
    with pytest.raises(DataError, match=r"iden_split.txt:7: '4 id10001/x/00001.wav'"):
        load_voxceleb1(root)


# ---------------------------------------------------------------- CREMA-D

def test_crema_d_speaker_disjoint_folds_and_header_only_file(tmp_path):
    root = tmp_path / "CREMA-D"
    emotions = ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")
    for i, actor in enumerate(range(1001, 1007)):
        for emotion in emotions[i % 3:i % 3 + 3]:
            _audio(root / "AudioWAV" / f"{actor}_DFA_{emotion}_XX.wav")
    (root / "AudioWAV" / "1006_MTI_SAD_XX.wav").write_bytes(b"RIFF" + bytes(40))  # 44 bytes
    bench = load_crema_d(root, max_missing=0.1)
    assert bench.classes == ("anger", "disgust", "fear", "happy", "neutral", "sad")
    clips = _by_id(bench)
    assert clips["1002_DFA_HAP_XX"].labels == ("happy",)
    assert {clips[f"{a}_DFA_{e}_XX"].fold_or_split for a, e in
            ((1001, "ANG"), (1006, "FEA"))} == {"1"}  # actors 0 and 5 share fold 1
    assert clips["1005_DFA_DIS_XX"].fold_or_split == "5"
    assert bench.counts() == {"1": 6, "2": 3, "3": 3, "4": 3, "5": 3}
    assert [(s.id, s.reason.split(" (")[0]) for s in bench.skipped] == [
        ("1006_MTI_SAD_XX", "no audio samples")]
    assert len(bench.protocol) == 5 and bench.notes[0] == "fold 1: actors 1001, 1006"
    # the release names one file with a one-letter level; it refused the whole dataset
    _audio(root / "AudioWAV" / "1003_ITH_SAD_X.wav")
    assert _by_id(load_crema_d(root, max_missing=0.1))["1003_ITH_SAD_X"].labels == ("sad",)
    _audio(root / "AudioWAV" / "1001_DFA_XYZ_XX.wav")
    with pytest.raises(DataError, match=r"1001_DFA_XYZ_XX.wav:name: label 'XYZ'"):
        load_crema_d(root, max_missing=0.1)


# ---------------------------------------------------------------- Speech Commands v2

def test_speech_commands_lists_background_noise_and_missing_listed_file(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    for rel in ("yes/0a7c2a8d_nohash_0.wav", "yes/0a7c2a8d_nohash_1.wav",
                "yes/bb05582b_nohash_0.wav", "no/0a7c2a8d_nohash_0.wav",
                "no/c1d39ce8_nohash_0.wav", "no/c1d39ce8_nohash_1.wav",
                "_background_noise_/white_noise.wav"):
        _audio(root / rel)
    _lines(root / "validation_list.txt", ["yes/bb05582b_nohash_0.wav"])
    _lines(root / "testing_list.txt", ["no/c1d39ce8_nohash_0.wav", "no/c1d39ce8_nohash_1.wav",
                                       "yes/deadbeef_nohash_0.wav"])
    bench = load_speech_commands(root, max_missing=0.2)
    assert bench.classes == ("no", "yes")
    assert bench.counts() == {"train": 3, "val": 1, "test": 2}
    assert _by_id(bench)["no/c1d39ce8_nohash_1"].fold_or_split == "test"
    assert [(s.id, s.reason, s.source) for s in bench.skipped] == [
        ("yes/deadbeef_nohash_0", "missing", "testing_list.txt:3")]
    assert bench.listed == 7
    _lines(root / "testing_list.txt", ["maybe/c1d39ce8_nohash_0.wav"])
    with pytest.raises(DataError, match=r"testing_list.txt:1: label 'maybe'"):
        load_speech_commands(root)


# ---------------------------------------------------------------- VoxLingua107

def test_voxlingua107_language_folders_and_dev_set(tmp_path):
    root = tmp_path / "voxlingua107"
    for rel in ("en/a1__U__S0---0001.000-0005.000.wav", "en/a2.wav", "ceb/b1.wav",
                "fr/c1.wav", "dev/en/d1.wav", "dev/fr/d2.wav"):
        _audio(root / rel)
    (root / "logs").mkdir()
    (root / "LICENSE").write_text("x")
    bench = load_voxlingua107(root)
    assert bench.classes == ("ceb", "en", "fr")
    assert bench.counts() == {"train": 4, "test": 2}
    assert _by_id(bench)["test/fr/d2"].labels == ("fr",)
    assert bench.protocol == (ProtocolRound(("train",), (), ("test",)),)
    _audio(root / "dev" / "xx" / "d3.wav")
    with pytest.raises(DataError, match=r"dev/xx:folder: label 'xx'"):
        load_voxlingua107(root)


# ---------------------------------------------------------------- GTZAN

def _gtzan(root):
    for i, genre in enumerate(GTZAN_GENRES):
        _audio(root / "genres_original" / genre / f"{genre}.{10 * i + 3:05d}.wav")
    _audio(root / "genres_original" / "blues" / "blues.00001.wav")
    return root


def test_gtzan_ten_folds_by_clip_number(tmp_path):
    bench = load_gtzan(_gtzan(tmp_path / "gtzan"))
    assert bench.classes == GTZAN_GENRES
    assert bench.counts() == {**{str(k): 1 for k in range(1, 11)}, "1": 2}
    clip = _by_id(bench)["rock.00093"]
    assert (clip.labels, clip.fold_or_split) == (("rock",), "10")
    assert len(bench.protocol) == 10


def test_gtzan_fault_filtered_lists(tmp_path):
    root = _gtzan(tmp_path / "gtzan")
    _lines(root / "splits" / "train_filtered.txt", ["blues/blues.00001.wav",
                                                    "blues/blues.00003.wav"])
    _lines(root / "splits" / "valid_filtered.txt", ["jazz/jazz.00053.wav"])
    _lines(root / "splits" / "test_filtered.txt", ["rock/rock.00093.wav", "pop/pop.00077.wav"])
    bench = load_gtzan(root, split_dir="splits", max_missing=0.2)
    assert bench.counts() == {"train": 2, "val": 1, "test": 1}
    assert [(s.id, s.source) for s in bench.skipped] == [("pop.00077", "test_filtered.txt:2")]
    # the lists usually sit outside the dataset (another repository): an absolute folder
    # was read as a folder under root
    outside = tmp_path / "sota-music-tagging-models" / "split" / "gtzan"
    for file in ("train_filtered.txt", "valid_filtered.txt", "test_filtered.txt"):
        _lines(outside / file, (root / "splits" / file).read_text().split())
    assert load_gtzan(root, split_dir=str(outside), max_missing=0.2).counts() == bench.counts()
    _lines(root / "splits" / "test_filtered.txt", ["polka/polka.00001.wav"])
    with pytest.raises(DataError, match=r"test_filtered.txt:1: label 'polka'"):
        load_gtzan(root, split_dir="splits")
    (root / "genres_original" / "polka").mkdir()
    with pytest.raises(DataError, match=r"polka:folder: label 'polka' is not one of the 10"):
        load_gtzan(root)


# ---------------------------------------------------------------- NSynth

def _nsynth(root, bad_family=False):
    notes = {"train": [("bass_synthetic_033-022-050", "bass", 22),
                       ("synth_lead_synthetic_000-100-127", "synth_lead", 100),
                       ("organ_electronic_001-010-025", "organ", 10)],
             "valid": [("keyboard_acoustic_004-060-025", "keyboard", 60)],
             "test": [("guitar_acoustic_010-066-100", "guitar", 66),
                      ("bass_electronic_018-108-100", "bass", 108)]}
    if bad_family:
        notes["test"].append(("kazoo_acoustic_000-060-050", "kazoo", 60))
    for split, rows in notes.items():
        folder = root / f"nsynth-{split}"
        examples = {n: {"note_str": n, "instrument_family_str": fam, "pitch": pitch,
                        "velocity": 50, "sample_rate": 16000} for n, fam, pitch in rows}
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "examples.json").write_text(json.dumps(examples, indent=4))
        for n, *_ in rows:
            _audio(folder / "audio" / f"{n}.wav")
    return root


def test_nsynth_family_and_pitch(tmp_path):
    root = _nsynth(tmp_path)
    family = load_nsynth_family(root)
    assert family.name == "nsynth-family" and len(family.classes) == 11
    assert family.counts() == {"train": 3, "val": 1, "test": 2}
    assert _by_id(family)["synth_lead_synthetic_000-100-127"].labels == ("synth_lead",)
    pitch = load_nsynth_pitch(root)
    assert pitch.classes[0] == "21" and pitch.classes[-1] == "108" and len(pitch.classes) == 88
    assert _by_id(pitch)["bass_electronic_018-108-100"].labels == ("108",)
    assert "organ_electronic_001-010-025" not in _by_id(pitch)
    assert pitch.notes == ("1 notes outside pitch 21..108 left out",)
    with pytest.raises(DataError, match=r"nsynth-test/examples.json:\d+: label 'kazoo'"):
        load_nsynth_family(_nsynth(tmp_path / "bad", bad_family=True))


# ---------------------------------------------------------------- MagnaTagATune

def _mtt(root, rows, empty=()):
    header = ("clip_id", "no voice", "guitar", "classical", "slow", "mp3_path")
    _table(root / "annotations_final.csv", header, rows, delimiter="\t",
           quoting=csv.QUOTE_ALL)
    for row in rows:
        target = root / row[-1]
        if row[-1] in empty:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
        else:
            _audio(target, fmt="MP3")
    return root


MTT_ROWS = [
    ("2", 0, 1, 1, 0, "f/american_bach_soloists-j_s__bach-01-bwv54__i_aria-30-59.mp3"),
    ("6", 0, 1, 0, 1, "0/ambient-a-01-x-0-29.mp3"), ("10", 1, 1, 1, 0, "b/b-1-0-29.mp3"),
    ("11", 0, 0, 0, 0, "c/c-1-0-29.mp3"), ("12", 1, 0, 1, 1, "c/c-2-0-29.mp3"),
    ("14", 0, 1, 0, 0, "d/d-1-0-29.mp3"), ("15", 0, 0, 0, 1, "e/e-1-0-29.mp3"),
]


def test_magnatagatune_top_tags_folder_split_and_empty_mp3(tmp_path):
    root = _mtt(tmp_path / "mtt", MTT_ROWS, empty=("e/e-1-0-29.mp3",))
    bench = load_magnatagatune(root, top_k=2, max_missing=0.2)
    # counts: guitar 4, classical 3, slow 3 (later column), no voice 2
    assert bench.task == "multilabel" and bench.classes == ("guitar", "classical")
    assert bench.counts() == {"train": 2, "val": 2, "test": 2}
    clips = _by_id(bench)
    assert clips["10"].labels == ("guitar", "classical")
    assert clips["12"].labels == ("classical",) and clips["11"].labels == ()
    assert clips["2"].fold_or_split == "test" and clips["2"].path.endswith(".mp3")
    assert [(s.id, s.reason) for s in bench.skipped] == [("15", "empty file (0 bytes)")]
    dropped = load_magnatagatune(root, top_k=2, max_missing=0.2, drop_unlabeled=True)
    assert "11" not in _by_id(dropped) and dropped.notes[1] == "2 clips with none of them dropped"
    with pytest.raises(ConfigError, match="top_k=50; accepted: 1..4"):
        load_magnatagatune(root)
    bad = [*MTT_ROWS[:3], ("13", 2, 0, 0, 0, "c/c-3.mp3")]
    with pytest.raises(DataError, match=r"annotations_final.csv:5: column 'no voice' is '2'"):
        load_magnatagatune(_mtt(tmp_path / "bad", bad), top_k=2)


# ---------------------------------------------------------------- DESED

def _desed(root, test_label="Dog"):
    header = ("filename", "onset", "offset", "event_label")
    meta, audio = root / "metadata", root / "audio"
    _table(meta / "train/synthetic21_train/soundscapes.tsv", header,
           [("0.wav", "0.5", "2.25", "Speech"), ("0.wav", "1.0", "3.0", "Dog"),
            ("1.wav", "0.0", "10.0", "Frying")], delimiter="\t")
    _table(meta / "validation/synthetic21_validation/soundscapes.tsv", header,
           [("100.wav", "2.0", "4.0", "Cat")], delimiter="\t")
    _table(meta / "validation/validation.tsv", header,
           [("Y00pbt6aJV8Y_350.000_360.000.wav", "0.0", "0.37", test_label),
            ("Y00pbt6aJV8Y_350.000_360.000.wav", "5.2", "7.9", "Speech"),
            ("Yempty_0.000_10.000.wav", "", "", "")], delimiter="\t")
    _table(meta / "validation/validation_durations.tsv", ("filename", "duration"),
           [("Y00pbt6aJV8Y_350.000_360.000.wav", "10.0"), ("Yempty_0.000_10.000.wav", "10.0"),
            ("Yquiet_1.000_9.000.wav", "8.0")], delimiter="\t")
    for rel in ("train/synthetic21_train/soundscapes/0.wav",
                "train/synthetic21_train/soundscapes/1.wav",
                "validation/synthetic21_validation/soundscapes_16k/100.wav",
                "validation/validation/Y00pbt6aJV8Y_350.000_360.000.wav",
                "validation/validation/Yempty_0.000_10.000.wav",
                "validation/validation/Yquiet_1.000_9.000.wav"):
        _audio(audio / rel)
    return root


def test_desed_events_clip_labels_durations_and_16k_folder(tmp_path):
    bench = load_desed(_desed(tmp_path / "dataset"))
    assert bench.task == "sed" and len(bench.classes) == 10
    assert bench.counts() == {"train": 2, "val": 1, "test": 3}
    clips = _by_id(bench)
    first = clips["train/0"]
    assert first.events == (Event(0.5, 2.25, "Speech"), Event(1.0, 3.0, "Dog"))
    assert first.labels == ("Dog", "Speech")  # vocabulary order
    assert clips["val/100"].path.endswith("synthetic21_validation/soundscapes_16k/100.wav")
    assert clips["test/Yempty_0.000_10.000"].events == ()
    assert clips["test/Yquiet_1.000_9.000"].duration == 8.0
    assert clips["test/Y00pbt6aJV8Y_350.000_360.000"].labels == ("Dog", "Speech")
    assert bench.protocol == (ProtocolRound(("train",), ("val",), ("test",)),)
    with pytest.raises(DataError, match=r"validation.tsv:2: label 'Doggo' is not one of the 10"):
        load_desed(_desed(tmp_path / "bad", test_label="Doggo"))
    with pytest.raises(DataError, match="expected file metadata/eval/public.tsv"):
        load_desed(tmp_path / "dataset", splits={
            "train": DESED_TRAIN, "test": ("metadata/eval/public.tsv", "audio/eval/public")})


DESED_TRAIN = ("metadata/train/synthetic21_train/soundscapes.tsv",
               "audio/train/synthetic21_train/soundscapes")


def _roll_reference(events, classes, hop, frames):
    roll = np.zeros((frames, len(classes)), dtype=bool)
    for i in range(frames):
        for onset, offset, label in events:
            if onset < (i + 1) * hop and offset > i * hop:
                roll[i, classes.index(label)] = True
    return roll


def test_event_roll_matches_the_overlap_reference(tmp_path):
    clip = _by_id(load_desed(_desed(tmp_path)))["train/0"]
    classes = ("Dog", "Speech")
    roll = event_roll(clip, classes, hop=0.25, duration=4.0)
    assert roll.shape == (16, 2)
    np.testing.assert_array_equal(roll, _roll_reference(clip.events, classes, 0.25, 16))
    assert roll[:, 1].nonzero()[0].tolist() == list(range(2, 9))  # 0.5 .. 2.25 s
    assert event_roll(clip, classes, hop=0.5).shape == (math.ceil(3.0 / 0.5), 2)


# ---------------------------------------------------------------- manifests and registry

def test_manifests_of_a_multiclass_round(tmp_path):
    bench = load_esc50(_esc50(tmp_path / "esc"))
    manifests = to_manifests(bench, round_index=0)
    assert [len(manifests[r]) for r in ("train", "val", "test")] == [5, 0, 2]
    entry = next(e for e in manifests["test"] if e.id == "1-100032-A-2")
    assert entry.labels == {"label": "dog"} and entry.split == "test"
    assert (entry.sample_rate, entry.channels, entry.duration) == (RATE, 1, 0.05)
    assert entry.captions == ("dog",) and (entry.corpus, entry.domain) == ("esc50", "sound")


def test_written_multilabel_and_sed_manifests_read_back(tmp_path):
    from alp_data.manifest import read_manifest

    paths = write_manifests(load_fsd50k(_fsd50k(tmp_path / "fsd")), tmp_path / "out")
    assert sorted(paths) == ["test", "train", "val"]
    train = {e.id: e for e in read_manifest(paths["train"])}
    assert train["64760"].labels == {"labels": "Bark;Dog;Animal"}
    assert train["64760"].captions == ("Bark, Dog, Animal",)
    rows = manifest_rows(load_desed(_desed(tmp_path / "desed")))
    row = next(r for r in rows["train"] if r["id"] == "train/0")
    assert row["labels"]["labels"] == "Dog;Speech"
    assert json.loads(row["labels"]["events"]) == [[0.5, 2.25, "Speech"], [1.0, 3.0, "Dog"]]


def test_unreadable_audio_fails_the_manifest_conversion_naming_the_file(tmp_path):
    root = _esc50(tmp_path / "esc")
    (root / "audio" / "5-3000-A-1.wav").write_bytes(b"not a wav file at all" * 4)
    with pytest.raises(DataError, match=r"1 clips have unreadable audio; first: .*5-3000-A-1"):
        to_manifests(load_esc50(root), round_index=4)


def test_registry_names_options_and_errors(tmp_path):
    assert sorted(BENCHMARKS) == sorted([
        "esc50", "urbansound8k", "fsd50k", "vggsound", "voxceleb1", "crema-d",
        "speech-commands-v2", "voxlingua107", "gtzan", "nsynth-family", "nsynth-pitch",
        "magnatagatune", "desed"])
    bench = load_benchmark("esc50", _esc50(tmp_path / "esc"), max_missing=0.5)
    assert bench.classes == ("rain", "rooster", "dog")
    assert load_benchmark("nsynth-pitch", _nsynth(tmp_path / "ns"),
                          pitch_range=(20, 70)).classes == tuple(str(p) for p in range(20, 71))
    with pytest.raises(UnknownComponentError, match="unknown benchmark 'esc-50'; valid "
                                                    "choices: crema-d, desed, esc50"):
        load_benchmark("esc-50", tmp_path)
    with pytest.raises(ConfigError, match="unknown option.* folds; accepted: max_missing"):
        load_benchmark("esc50", tmp_path, folds=3)
    with pytest.raises(ConfigError, match="accepted: pitch_range, max_missing"):
        load_benchmark("nsynth-family", tmp_path, task="pitch")
