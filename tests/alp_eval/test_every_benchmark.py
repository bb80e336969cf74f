"""Every registered benchmark task runs through `alp eval`'s code path on a tiny copy written
in its own layout: loaded, embedded once (every clip), probed on every protocol round.

The audio is tones, one pitch per class (several for multi-label clips), 0.4 s each; the
encoder is a tiny random-weight model (evaluation is the same code whatever the weights).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
from tests.shared import TINY_ALP_MODEL, write_table

from alp_eval.pretrained import PretrainedALP
from alp_eval.protocol.run import benchmark_task_names, evaluate_benchmarks, resolve_benchmark_tasks

MODEL = TINY_ALP_MODEL
_N = [0]


def tone(path, *classes, seconds=0.4, fmt=None):
    """A tone per class index (pitch 300 Hz * (k + 1)) plus a little noise."""
    _N[0] += 1
    t = np.arange(int(seconds * 16000)) / 16000
    wave = 0.02 * np.random.default_rng(_N[0]).standard_normal(t.size)
    for k in classes:
        wave += 0.3 / len(classes) * np.sin(2 * np.pi * 300.0 * (k + 1) * t)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), 16000, format=fmt)


def esc50(root):
    rows = []
    for fold in range(1, 6):
        for target, category in enumerate(("dog", "rain")):
            for k in range(2):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                tone(root / "audio" / name, target)
                rows.append((name, fold, target, category, "False", "1", "A"))
    write_table(root / "meta" / "esc50.csv",
          ("filename", "fold", "target", "category", "esc10", "src_file", "take"), rows)
    return {}


def urbansound8k(root):
    rows = []
    for fold in range(1, 11):
        for cid, name in enumerate(("air_conditioner", "car_horn")):
            file = f"{fold}{cid}-{cid}-0-0.wav"
            rows.append((file, 100 + fold, 0.0, 4.0, 1, fold, cid, name))
            tone(root / "audio" / f"fold{fold}" / file, cid)
    write_table(root / "metadata" / "UrbanSound8K.csv",
          ("slice_file_name", "fsID", "start", "end", "salience", "fold", "classID", "class"),
          rows)
    return {}


def fsd50k(root):
    gt = root / "FSD50K.ground_truth"
    vocab = ["Dog", "Music"]
    write_table(gt / "vocabulary.csv", None, [(i, c, f"/m/{i}") for i, c in enumerate(vocab)])
    combos = [[0], [1], [0, 1]]
    dev = []
    for i in range(8):
        labels = combos[i % 3]
        dev.append((str(100 + i), ",".join(vocab[k] for k in labels), "m",
                    "val" if i >= 6 else "train"))
        tone(root / "FSD50K.dev_audio" / f"{100 + i}.wav", *labels)
    ev = []
    for i in range(4):
        labels = combos[i % 3]
        ev.append((str(200 + i), ",".join(vocab[k] for k in labels), "m"))
        tone(root / "FSD50K.eval_audio" / f"{200 + i}.wav", *labels)
    write_table(gt / "dev.csv", ("fname", "labels", "mids", "split"), dev)
    write_table(gt / "eval.csv", ("fname", "labels", "mids"), ev)
    return {}


def vggsound(root):
    rows = []
    for i in range(10):
        label = ("dog barking", "rain")[i % 2]
        ytid = f"video{i:06d}"
        rows.append((ytid, 10, label, "test" if i >= 6 else "train"))
        tone(root / "audio" / f"{ytid}_000010.wav", i % 2)
    write_table(root / "vggsound.csv", None, rows)
    return {}


def voxceleb1(root):
    lines = []
    for s, speaker in enumerate(("id10001", "id10002")):
        for u, code in enumerate((1, 1, 1, 2, 3, 3)):
            rel = f"{speaker}/video{u % 2}/{u:05d}.wav"
            lines.append(f"{code} {rel}")
            tone(root / "wav" / rel, s)
    (root / "iden_split.txt").write_text("\n".join(lines) + "\n")
    return {}


def crema_d(root):
    for actor in range(1001, 1006):
        for k, emotion in enumerate(("ANG", "HAP")):
            for sentence in ("DFA", "IEO"):
                tone(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_XX.wav", k)
    return {}


def speech_commands(root):
    val, test = [], []
    for k, word in enumerate(("yes", "no")):
        for i in range(7):
            rel = f"{word}/{i:08x}_nohash_0.wav"
            tone(root / rel, k)
            (val if i == 4 else test if i >= 5 else []).append(rel)
    tone(root / "_background_noise_" / "white_noise.wav", 0)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    return {}


def voxlingua107(root):
    for k, code in enumerate(("en", "fr")):
        for i in range(4):
            tone(root / code / f"{code}{i}.wav", k)
        for i in range(2):
            tone(root / "dev" / code / f"dev{code}{i}.wav", k)
    return {}


GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop",
          "reggae", "rock")


def gtzan(root):
    for k, genre in enumerate(GENRES):  # 3 clips a genre, every fold (NN // 10 + 1) filled
        for j in range(3):
            n = 10 * ((k + 3 * j) % 10) + j
            tone(root / "genres" / genre / f"{genre}.{n:05d}.wav", k)
    return {}


def nsynth(root):
    for split, count in (("train", 4), ("valid", 1), ("test", 2)):
        examples = {}
        for k, family in enumerate(("bass", "organ")):
            for i in range(count):
                note = f"{family}_electronic_{split}{i:03d}-0{60 + 12 * k}-100"
                examples[note] = {"note_str": note, "instrument_family_str": family,
                                  "pitch": 60 + 12 * k, "velocity": 100, "sample_rate": 16000}
                tone(root / f"nsynth-{split}" / "audio" / f"{note}.wav", k)
        (root / f"nsynth-{split}" / "examples.json").write_text(json.dumps(examples))
    return {}


def magnatagatune(root):
    rows = []
    for i, folder in enumerate("00000cdd" * 2):
        tags = [(0,), (1,), (0, 1)][i % 3]
        path = f"{folder}/clip-{i}-0-29.mp3"
        rows.append((str(i), int(0 in tags), int(1 in tags), path))
        tone(root / path, *tags, fmt="MP3")
    write_table(root / "annotations_final.csv", ("clip_id", "guitar", "slow", "mp3_path"),
          [tuple(str(v) for v in r) for r in rows], delimiter="\t")
    return {"loader": {"top_k": 2}}


def desed(root):
    header = ("filename", "onset", "offset", "event_label")
    meta, audio = root / "metadata", root / "audio"
    splits = {"train": ("train/synthetic21_train/soundscapes", 6),
              "val": ("validation/synthetic21_validation/soundscapes", 2),
              "test": ("validation/validation", 3)}
    tsv = {"train": "train/synthetic21_train/soundscapes.tsv",
           "val": "validation/synthetic21_validation/soundscapes.tsv",
           "test": "validation/validation.tsv"}
    for split, (folder, count) in splits.items():
        rows = []
        for i in range(count):
            name = f"{split}{i}.wav"
            label = ("Dog", "Speech")[i % 2]
            rows.append((name, "0.5", "1.5", label))
            t = np.arange(32000) / 16000
            on = (t >= 0.5) & (t < 1.5)
            wave = 0.3 * on * np.sin(2 * np.pi * 300.0 * (i % 2 + 1) * t)
            (audio / folder).mkdir(parents=True, exist_ok=True)
            sf.write(audio / folder / name, wave.astype(np.float32), 16000)
        write_table(meta / tsv[split], header, rows, delimiter="\t")
    return {}


WRITERS = {
    "esc50": esc50, "urbansound8k": urbansound8k, "fsd50k": fsd50k, "vggsound": vggsound,
    "voxceleb1": voxceleb1, "crema-d": crema_d, "speech-commands-v2": speech_commands,
    "voxlingua107": voxlingua107, "gtzan": gtzan, "nsynth-family": nsynth,
    "nsynth-pitch": nsynth, "magnatagatune": magnatagatune, "desed": desed,
}


@pytest.fixture(scope="module")
def encoder():
    return PretrainedALP.from_config({"model": MODEL}, seed=0)


def test_every_registered_benchmark_has_a_tiny_copy_here():
    assert set(WRITERS) == {n for n in benchmark_task_names() if not n.endswith("-retrieval")}


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_the_benchmark_runs_end_to_end_on_its_tiny_copy(name, tmp_path, encoder):
    options = WRITERS[name](tmp_path)
    (task,) = resolve_benchmark_tasks([{"name": name, "root": str(tmp_path), **options}],
                                      batch_size=8, workers=1)
    bench = task.load()
    report = evaluate_benchmarks({"tiny": encoder}, [task], None)
    results = report["results"]["tiny"]
    kind = "sed" if bench.task == "sed" else "linear-probe"
    result = results[f"{name}/{kind}"]
    details = result["details"]
    assert details["clips"]["embedded"] == details["clips"]["listed"] == len(bench.clips)
    assert details["n_rounds"] == len(bench.protocol) == len(details["per_round"])
    value = result["metrics"][result["primary"]]
    assert math.isfinite(value) and 0.0 <= value <= 1.0, result
    assert report["summary"]["tiny"]["domains"]  # the domain average is there
