"""Manifest reading/writing: validation errors name file, line and key; paths resolve."""

from __future__ import annotations

import json
import os

import pytest

from alp_core.errors import DataError
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest


def _row(**over):
    row = {"id": "a", "audio": "audio/a.flac", "duration": 1.5, "sample_rate": 16000,
           "captions": ["a dog barks"], "labels": {"domain": "env"}, "split": "train"}
    row.update(over)
    return row


def _write(path, rows):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_resolves_relative_and_keeps_absolute_and_urls(tmp_path):
    path = _write(tmp_path / "m.jsonl", [
        _row(),
        "",
        _row(id="b", audio="/abs/b.wav", labels={}),
        {k: v for k, v in _row(id="c", audio="s3://bucket/c.flac").items()
         if k not in ("labels", "split")},
    ])
    a, b, c = read_manifest(path)
    assert a == ManifestEntry("a", str(tmp_path / "audio" / "a.flac"), 1.5, 16000,
                              ("a dog barks",), {"domain": "env"}, "train")
    assert os.path.isabs(a.audio)
    assert b.audio == "/abs/b.wav"
    assert c.audio == "s3://bucket/c.flac" and c.labels == {} and c.split == ""


@pytest.mark.parametrize(
    ("bad", "key", "accepted"),
    [
        ('{"id": "x", "audio": ', "<row>", "one JSON object per line"),
        ({k: v for k, v in _row(id="x").items() if k != "sample_rate"}, "sample_rate",
         "rows with id"),
        (_row(id="x", duration="long"), "duration", "number of seconds"),
        (_row(id="x", duration=float("nan")), "duration", "finite number of seconds"),
        (_row(id="x", duration=float("inf")), "duration", "finite number of seconds"),
        (_row(id="x", offset=float("nan")), "offset", "finite number of seconds"),
        (json.dumps(_row(id="x")).replace('"duration": 1.5', '"duration": 1e999'), "duration",
         "finite number of seconds"),
        (json.dumps(_row(id="x")).replace('"duration": 1.5', '"duration": 1' + "0" * 400),
         "duration", "finite number of seconds"),  # an int no float holds
        (_row(id="x", sample_rate=16000.0), "sample_rate", "positive integer"),
        (_row(id="x", captions=[]), "captions", "non-empty list"),
        (_row(id="x", captions="a dog"), "captions", "non-empty list"),
        (_row(id="x", captions=["ok", ""]), "captions", "non-empty strings"),
        (_row(id="x", labels={"a": 1}), "labels", "mapping strings to strings"),
        (_row(id="a"), "id", "unique"),
        ([1, 2], "<row>", "JSON object"),
    ],
)
def test_malformed_line_names_file_line_key_and_accepted(tmp_path, bad, key, accepted):
    path = _write(tmp_path / "bad.jsonl", [_row(), "", bad])
    with pytest.raises(DataError) as info:
        read_manifest(path)
    msg = str(info.value)
    assert f"{path}:3:" in msg
    assert repr(key) in msg
    assert accepted in msg


def test_duplicate_id_names_first_line(tmp_path):
    path = _write(tmp_path / "dup.jsonl", [_row(), _row(audio="other.flac")])
    with pytest.raises(DataError, match=r"dup.jsonl:2: key 'id': duplicate id 'a' .*line 1"):
        read_manifest(path)


def test_missing_manifest_names_path(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl")


def test_write_then_read_round_trip_relative(tmp_path):
    entries = [
        ManifestEntry("a", str(tmp_path / "corpus" / "wav" / "a.wav"), 2.0, 16000,
                      ("one", "two"), {"k": "v"}, "test"),
        ManifestEntry("b", "/elsewhere/b.flac", 1.0, 44100, ("three",)),
    ]
    path = tmp_path / "corpus" / "manifest.jsonl"
    write_manifest(path, entries)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[0]["audio"] == os.path.join("wav", "a.wav")
    assert rows[1]["audio"] == "/elsewhere/b.flac" and "split" not in rows[1]
    assert read_manifest(path) == entries
    moved = tmp_path / "moved"
    os.rename(tmp_path / "corpus", moved)
    assert read_manifest(moved / "manifest.jsonl")[0].audio == str(moved / "wav" / "a.wav")
