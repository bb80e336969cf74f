"""The manifest schema: new fields, caption objects, gzip, fsspec URLs and bad-input errors."""

from __future__ import annotations

import gzip
import json
import uuid

import fsspec
import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import ConfigError, DataError
from alp_data.manifest import Caption, ManifestEntry, read_manifest, write_manifest
from alp_data.sources import ManifestSource, ManifestSourceConfig


def _entry(**over):
    values = dict(id="c1", audio="s3://bucket/c1.flac", duration=2.5, sample_rate=48000,
                  captions=("dog, bark", "A dog barks twice."), labels={"tag": "dog"},
                  split="train", offset=1.25, channels=2, corpus="audiocaps", domain="sound",
                  caption_info=(Caption("dog, bark", "tags", "llm"),
                                Caption("A dog barks twice.", "sentence", "human")))
    values.update(over)
    return ManifestEntry(**values)


@pytest.mark.parametrize("name", ["m.jsonl", "m.jsonl.gz"])
def test_round_trip_through_memory_url_keeps_every_field(name):
    url = f"memory://{uuid.uuid4().hex}/{name}"
    entries = [_entry(), _entry(id="c2", audio="rel/c2.wav", caption_info=(), offset=0.0,
                                channels=0, corpus="", domain="", split="")]
    write_manifest(url, entries)
    with fsspec.open(url, "rb") as handle:
        raw = handle.read()
    assert (raw[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_manifest(url)
    assert back[0] == entries[0]
    assert back[1].audio == url.rsplit("/", 1)[0] + "/rel/c2.wav"
    assert back[1].caption_records() == (Caption("dog, bark"), Caption("A dog barks twice."))


def test_row_form_strings_and_objects(tmp_path):
    row = _entry(caption_info=(Caption("dog, bark", "tags"), Caption("A dog barks twice."))
                 ).to_row()
    assert row["captions"] == [{"text": "dog, bark", "style": "tags"}, "A dog barks twice."]
    assert (row["offset"], row["channels"], row["domain"]) == (1.25, 2, "sound")
    plain = ManifestEntry("a", "a.wav", 1.0, 16000, ("x",)).to_row()
    assert set(plain) == {"id", "audio", "duration", "sample_rate", "captions", "labels"}


def test_first_format_rows_still_read(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": "a.wav", "duration": 1.0,
                                "sample_rate": 16000, "captions": ["x", "y"],
                                "labels": {"domain": "env"}}) + "\n")
    entry, = read_manifest(path)
    assert entry.captions == ("x", "y") and entry.caption_info == ()
    assert (entry.offset, entry.channels, entry.corpus, entry.domain) == (0.0, 0, "", "")


def _bad(tmp_path, **over):
    row = {"id": "a", "audio": "a.wav", "duration": 1.0, "sample_rate": 16000,
           "captions": ["ok"]}
    row.update(over)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "z", "audio": "z.wav", "duration": 1, "sample_rate": 8000, '
                    '"captions": ["fine"]}\n' + json.dumps(row) + "\n")
    return path


@pytest.mark.parametrize(("over", "key", "accepted"), [
    ({"offset": -1}, "offset", "seconds >= 0"),
    ({"channels": 1.5}, "channels", "channel count"),
    ({"domain": "env"}, "domain", "speech, music, sound"),
    ({"corpus": 3}, "corpus", "a string"),
    ({"captions": [{"text": "x", "mood": "sad"}]}, "captions", '"style"?'),
    ({"captions": [{"style": "tags"}]}, "captions", '"text": str'),
    ({"captions": [{"text": " "}]}, "captions", "non-empty strings"),
])
def test_bad_new_fields_name_file_line_and_key(tmp_path, over, key, accepted):
    path = _bad(tmp_path, **over)
    with pytest.raises(DataError) as info:
        read_manifest(path)
    assert f"{path}:2: key {key!r}" in str(info.value) and accepted in str(info.value)


def test_row_missing_a_required_field_names_it(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "audio": "a.wav", "sample_rate": 16000,
                                "captions": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl:1: key 'duration': required key is missing"):
        read_manifest(path)


def test_not_utf8_names_file_line_and_byte_offset(tmp_path):
    good = b'{"id": "a", "audio": "a.wav", "duration": 1, "sample_rate": 8, "captions": ["x"]}\n'
    path = tmp_path / "latin.jsonl"
    path.write_bytes(good + b'{"id": "caf\xe9"}\n')
    with pytest.raises(DataError, match=rf"latin.jsonl:2: not UTF-8 at byte offset "
                       rf"{len(good) + 11}"):
        read_manifest(path)
    gz = tmp_path / "latin.jsonl.gz"
    gz.write_bytes(gzip.compress(b"\xff\n"))
    with pytest.raises(DataError, match="latin.jsonl.gz:1: not UTF-8 at decompressed byte "
                       "offset 0"):
        read_manifest(gz)


def test_manifest_source_accepts_urls_and_names_missing_ones(tmp_path):
    base = f"memory://{uuid.uuid4().hex}"
    write_manifest(f"{base}/train.jsonl.gz", [_entry()])
    write_manifest(f"{base}/test.jsonl", [_entry(id="t")])
    paths = ManifestSource(ManifestSourceConfig(train=f"{base}/train.jsonl.gz",
                                                test=f"{base}/test.jsonl")).prepare(tmp_path)
    assert paths == {"train": f"{base}/train.jsonl.gz", "test": f"{base}/test.jsonl"}
    assert read_manifest(paths["test"])[0].id == "t"
    with pytest.raises(ConfigError, match=r"data.source.test: manifest .*nope.jsonl"):
        ManifestSource(ManifestSourceConfig(train=f"{base}/train.jsonl.gz",
                                            test=f"{base}/nope.jsonl")).prepare(tmp_path)


def test_dataset_reads_only_the_segment_at_the_offset(tmp_path):
    from alp_data.dataset import AudioCaptionDataset, AudioConfig, BadClip

    rate = 16000
    wave = np.zeros(3 * rate, dtype="float32")
    t = np.arange(rate) / rate
    wave[rate:2 * rate] = 0.5 * np.sin(2 * np.pi * 440 * t)  # only the second second sounds
    sf.write(str(tmp_path / "long.wav"), wave, rate)
    silence = float(np.log(np.finfo(np.float32).eps))  # the fbank's log floor
    loud = AudioCaptionDataset(
        [ManifestEntry("s", str(tmp_path / "long.wav"), 1.0, rate, ("x",), offset=1.0)],
        train=False)[0]
    assert loud["duration"] == pytest.approx(1.0)
    assert float(loud["features"].min()) > silence + 1.0  # no silent frame was read
    quiet_entry = ManifestEntry("q", str(tmp_path / "long.wav"), 0.5, rate, ("x",), offset=2.5)
    skipped = AudioCaptionDataset([quiet_entry], train=False)[0]
    assert isinstance(skipped, BadClip) and skipped.reason == "silent"  # skipped by default
    quiet = AudioCaptionDataset([quiet_entry], train=False,
                                audio=AudioConfig(skip_silent=False))[0]
    assert quiet["duration"] == pytest.approx(0.5)
    assert float(quiet["features"].max()) == pytest.approx(silence, abs=1e-3)


def test_the_byte_offset_counts_a_leading_utf8_byte_order_mark(tmp_path):
    good = b'{"id": "a", "audio": "a.wav", "duration": 1, "sample_rate": 8, "captions": ["x"]}\n'
    raw = b"\xef\xbb\xbf" + good + b'{"id": "caf\xe9"}\n'
    path = tmp_path / "bom.jsonl"
    path.write_bytes(raw)
    offset = raw.index(b"\xe9")  # in the file as it is, mark included
    with pytest.raises(DataError, match=rf"bom.jsonl:2: not UTF-8 at byte offset {offset} "):
        read_manifest(path)
    bad: list = []
    read_manifest(path, max_bad_rows=5, bad_rows=bad)
    assert f"byte offset {offset} " in bad[0].problem
