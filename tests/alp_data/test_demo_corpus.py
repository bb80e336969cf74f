"""The demo corpus: deterministic bytes, valid audio and manifests, captions naming the labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from alp_data.demo import (
    CAPTION_STYLES,
    DOMAINS,
    TASKS,
    DemoCorpusConfig,
    caption_mentions,
    generate_demo_corpus,
)

SMALL = {"num_clips": 36, "min_seconds": 0.6, "max_seconds": 1.2, "num_workers": 1}


def _read_tree(root: Path) -> dict[str, bytes]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("demo")
    return root, generate_demo_corpus(root, DemoCorpusConfig(**SMALL))


def test_returns_manifest_paths_and_writes_files(corpus):
    root, paths = corpus
    assert paths == {"train": root / "train.jsonl", "test": root / "test.jsonl"}
    assert (root / "corpus.json").is_file()
    assert len(list((root / "audio").glob("*.flac"))) == SMALL["num_clips"]


def test_same_config_gives_identical_bytes(corpus, tmp_path):
    root, _ = corpus
    generate_demo_corpus(tmp_path, DemoCorpusConfig(**SMALL))
    assert _read_tree(tmp_path) == _read_tree(root)


def test_worker_count_does_not_change_output(corpus, tmp_path):
    root, _ = corpus
    generate_demo_corpus(tmp_path, DemoCorpusConfig(**{**SMALL, "num_workers": 2}))
    first, second = _read_tree(root), _read_tree(tmp_path)
    assert {k: v for k, v in first.items() if k != "corpus.json"} == {
        k: v for k, v in second.items() if k != "corpus.json"
    }
    assert json.loads(second["corpus.json"])["config"]["num_workers"] == 2


def test_other_seed_gives_other_audio(corpus, tmp_path):
    root, _ = corpus
    generate_demo_corpus(tmp_path, DemoCorpusConfig(**{**SMALL, "num_clips": 3, "seed": 1}))
    name = "audio/speech-00000.flac"
    assert (tmp_path / name).read_bytes() != (root / name).read_bytes()


def test_audio_decodes_at_rate_and_duration(corpus):
    root, paths = corpus
    for split in ("train", "test"):
        for row in _rows(paths[split]):
            audio, rate = sf.read(root / row["audio"], dtype="float32")
            info = sf.info(root / row["audio"])
            assert (info.format, info.subtype, info.channels) == ("FLAC", "PCM_16", 1)
            assert rate == row["sample_rate"] == 16000
            assert audio.ndim == 1
            assert abs(len(audio) / rate - row["duration"]) < 1e-3
            assert SMALL["min_seconds"] - 1e-3 <= row["duration"] <= SMALL["max_seconds"] + 1e-3
            assert 0.05 < np.max(np.abs(audio)) <= 1.0
            assert np.std(audio) > 1e-3


def test_splits_are_disjoint_and_sized(corpus):
    _, paths = corpus
    train, test = _rows(paths["train"]), _rows(paths["test"])
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in test} == {"test"}
    train_ids, test_ids = {r["id"] for r in train}, {r["id"] for r in test}
    assert not train_ids & test_ids
    assert len(train_ids | test_ids) == SMALL["num_clips"]
    assert abs(len(test) / SMALL["num_clips"] - 0.2) <= 0.05
    for domain in DOMAINS:
        assert any(r["labels"]["domain"] == domain for r in test)
        assert any(r["labels"]["domain"] == domain for r in train)


def test_ids_and_paths(corpus):
    _, paths = corpus
    for row in _rows(paths["train"]) + _rows(paths["test"]):
        domain, number = row["id"].rsplit("-", 1)
        assert domain == row["labels"]["domain"] and len(number) == 5
        assert row["audio"] == f"audio/{row['id']}.flac"
        assert set(row) == {"id", "audio", "duration", "sample_rate", "captions", "labels", "split"}


def test_labels_belong_to_declared_tasks(corpus):
    root, paths = corpus
    summary = json.loads((root / "corpus.json").read_text())
    classes = {t["name"]: t["classes"] for t in summary["tasks"]}
    domains = {t["name"]: t["domain"] for t in summary["tasks"]}
    assert 3 <= len(classes) <= 8 and all(2 <= len(c) <= 10 for c in classes.values())
    assert classes == {name: list(c) for name, (_, c) in TASKS.items()}
    for row in _rows(paths["train"]) + _rows(paths["test"]):
        domain = row["labels"]["domain"]
        expected = {t for t, d in domains.items() if d in (None, domain)}
        assert set(row["labels"]) == expected
        for task, value in row["labels"].items():
            assert value in classes[task]
    total = summary["counts"]["train"] + summary["counts"]["test"]
    assert total == SMALL["num_clips"]
    assert summary["config"] == DemoCorpusConfig(**SMALL).model_dump()
    assert summary["version"]


def test_each_clip_has_distinct_captions_in_every_style(corpus):
    _, paths = corpus
    for row in _rows(paths["train"]) + _rows(paths["test"]):
        captions = row["captions"]
        assert len(captions) == len(CAPTION_STYLES) >= 3
        assert len(set(captions)) == len(captions)
        tags, short, detailed = captions
        assert "," in tags and not tags.endswith(".")
        assert short.endswith(".") and detailed.endswith(".")
        assert len(short) < len(detailed)


def test_captions_mention_every_label(corpus):
    _, paths = corpus
    for row in _rows(paths["train"]) + _rows(paths["test"]):
        for style, caption in zip(CAPTION_STYLES, row["captions"], strict=True):
            for task, value in row["labels"].items():
                if style == "short" and task == "domain":
                    continue  # "A dog barks twice." is a fine short caption
                assert caption_mentions(caption, task, value), (row["id"], style, task, caption)


def test_captions_vary_across_clips(corpus):
    _, paths = corpus
    shorts = [r["captions"][1] for r in _rows(paths["train"])]
    assert len(set(shorts)) == len(shorts)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"num_clips": 0}, "num_clips"),
        ({"min_seconds": 3.0, "max_seconds": 2.0}, "min_seconds"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"num_workers": 0}, "num_workers"),
        ({"seed": -1}, "seed"),
        ({"clips": 10}, "clips"),
    ],
)
def test_bad_config_is_rejected(values, key):
    with pytest.raises(ValidationError, match=key):
        DemoCorpusConfig(**values)


def test_a_knock_count_counts_only_the_knocks_the_clip_holds():
    # clip 332: two knocks of the second group start past the clip's 1.59 s end and are not
    # placed; its captions said "five times"
    from alp_data.demo.corpus import render_clip

    _, row = render_clip(332, DemoCorpusConfig(num_clips=3000))
    assert row["labels"]["event"] == "door_knock"
    assert any("three times" in c for c in row["captions"])
    assert not any("five times" in c for c in row["captions"])


def test_caption_mentions_matches_whole_words_not_inside_others():
    caption = "A woman with a high-pitched, thin voice speaks unhurriedly with a level tone."
    assert not caption_mentions(caption, "speaking_rate", "fast")  # "hurried" in "unhurriedly"
    # spk04: a man with this high, thin voice ("male" in "female", "man" in "woman")
    assert not caption_mentions(caption, "speaker", "spk04")


def test_a_cached_corpus_from_another_generator_version_is_written_again(tmp_path):
    # a newer generator may caption differently: a cache from an older one is not reused
    from alp_data.sources import DemoSource

    config = DemoCorpusConfig(num_clips=6, min_seconds=0.5, max_seconds=0.6, num_workers=1)
    source = DemoSource(config)
    paths = source.prepare(tmp_path)
    info = tmp_path / "corpus.json"
    stamp = paths["train"].stat().st_mtime_ns
    assert source.prepare(tmp_path)["train"].stat().st_mtime_ns == stamp  # reused
    summary = json.loads(info.read_text())
    info.write_text(json.dumps({**summary, "version": "alp-demo-1"}))
    source.prepare(tmp_path)
    assert json.loads(info.read_text())["version"] != "alp-demo-1"  # generated again
