"""URL credentials never reach a message: scrub_url, and the errors/logs that use it."""

from __future__ import annotations

import json
import logging
import traceback
import uuid

import fsspec
import pytest

from alp_core.errors import ConfigError, DataError
from alp_data.audio import AudioError, audio_info, load_audio
from alp_data.loader import BadClipBudget
from alp_data.manifest import BadRow, ManifestEntry, read_manifest
from alp_data.scrub import scrub_url
from alp_data.sources import ManifestSource, ManifestSourceConfig
from alp_data.transform import BadClip, ClipTransform

SECRETS = ("hunter2", "AKIAEXAMPLE", "wJalrXUtnFEMI", "c2lnbmF0dXJl", "FwoGZXIvYXdzE", "tok3n")

PRESIGNED = ("https://bucket.s3.amazonaws.com/clips/a.flac?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             "&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
             "&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
             "&X-Amz-Security-Token=FwoGZXIvYXdzE&X-Amz-Signature=wJalrXUtnFEMI")
SAS = ("https://acct.blob.core.windows.net/audio/a.wav?sv=2022-11-02&ss=b&srt=o&sp=r"
       "&se=2024-01-01T00%3A00%3A00Z&st=2023-01-01T00%3A00%3A00Z&spr=https&sig=c2lnbmF0dXJl")


def _clean(text: str) -> bool:
    return not any(s in text for s in SECRETS)


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://AKIAEXAMPLE:hunter2@bucket/a.flac", "s3://***@bucket/a.flac"),
    ("https://user:hunter2@host.example:8443/x.wav", "https://***@host.example:8443/x.wav"),
    ("https://tok3n@host.example/x.wav", "https://***@host.example/x.wav"),
    (PRESIGNED, PRESIGNED.replace("AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request", "***")
     .replace("FwoGZXIvYXdzE", "***").replace("wJalrXUtnFEMI", "***")),
    (SAS, "https://acct.blob.core.windows.net/audio/a.wav?sv=***&ss=***&srt=***&sp=***"
          "&se=***&st=***&spr=***&sig=***"),
    ("https://h/x.wav?token=tok3n&format=wav", "https://h/x.wav?token=***&format=wav"),
    ("https://h/x.wav?access_token=tok3n", "https://h/x.wav?access_token=***"),
    ("https://h/x.wav?key=hunter2", "https://h/x.wav?key=***"),
    ("https://h/x.wav?Signature=hunter2&Expires=1", "https://h/x.wav?Signature=***&Expires=1"),
])
def test_scrub_url(url, expected):
    assert scrub_url(url) == expected
    assert scrub_url(expected) == expected  # idempotent
    assert _clean(scrub_url(url))


def test_scrub_inside_messages_and_ordinary_text():
    msg = f"cannot decode audio file {PRESIGNED}: error (x); see s3://k:hunter2@b/c.wav:3: key"
    out = scrub_url(msg)
    assert _clean(out)
    assert out.startswith("cannot decode audio file https://bucket.s3.amazonaws.com/clips/a.flac?")
    assert out.endswith("see s3://***@b/c.wav:3: key")  # the line number survives
    plain = ["/data/corpus/a@2x.wav", "memory://abc/m.jsonl:3: key 'id': got 'a=b'",
             "relative/dir/file.flac", "s3://bucket/key=value/a.wav", "x = 3, y == 4",
             "https://host/a.wav?format=flac&rate=16000", "user@example.com wrote"]
    for text in plain:
        assert scrub_url(text) == text


def test_load_audio_errors_carry_no_secret():
    base = uuid.uuid4().hex
    corrupt = f"memory://AKIAEXAMPLE:hunter2@{base}/a.wav?X-Amz-Signature=wJalrXUtnFEMI"
    with fsspec.open(corrupt, "wb") as handle:
        handle.write(b"not audio at all" * 8)
    urls = {
        corrupt: "unreadable",
        f"memory://u:hunter2@{base}/gone.wav?sig=c2lnbmF0dXJl": "missing",
        "nosuchproto://AKIAEXAMPLE:hunter2@bucket/a.wav": "backend",
        PRESIGNED.replace("https://", "nosuchproto://"): "backend",
    }
    for url, reason in urls.items():
        for call in (load_audio, audio_info):
            with pytest.raises(AudioError) as info:
                call(url)
            assert info.value.reason == reason
            text = "".join(traceback.format_exception(info.value))  # the cause chain too
            assert _clean(text), text
            assert "***" in str(info.value)
        out = ClipTransform(train=False)(ManifestEntry("c", url, 1.0, 16000, ("x",)), 0)
        assert isinstance(out, BadClip) and out.reason == reason
        assert _clean(out.path) and _clean(out.error)


def test_read_manifest_errors_carry_no_secret():
    base = uuid.uuid4().hex
    url = f"memory://AKIAEXAMPLE:hunter2@{base}/m.jsonl?sig=c2lnbmF0dXJl"
    for target in (url, "nosuchproto://u:hunter2@b/m.jsonl?token=tok3n"):
        with pytest.raises(DataError) as info:
            read_manifest(target)
        assert _clean("".join(traceback.format_exception(info.value)))
    with fsspec.open(url, "wb") as handle:
        handle.write(b'{"id": "a"}\n\xff\n{"bad json\n')
    with pytest.raises(DataError) as info:
        read_manifest(url)
    assert _clean("".join(traceback.format_exception(info.value)))
    assert ":2: not UTF-8" in str(info.value)
    bad: list[BadRow] = []
    with pytest.raises(DataError) as info:
        read_manifest(url, max_bad_rows=2, bad_rows=bad)
    assert _clean(str(info.value)) and "3 bad rows" in str(info.value)
    assert len(bad) == 3 and all(_clean(str(r)) for r in bad)


def test_manifest_source_messages_carry_no_secret(tmp_path):
    missing = f"memory://u:hunter2@{uuid.uuid4().hex}/m.jsonl?sig=c2lnbmF0dXJl"
    for train in (missing, "nosuchproto://AKIAEXAMPLE:hunter2@b/m.jsonl"):
        with pytest.raises(ConfigError) as info:
            ManifestSource(ManifestSourceConfig(train=train, test=train)).prepare(tmp_path)
        assert _clean(str(info.value)), str(info.value)


def test_budget_logs_errors_and_file_carry_no_secret(tmp_path, caplog):
    clip = BadClip(0, "a", "s3://AKIAEXAMPLE:hunter2@b/a.wav?token=tok3n",
                   f"cannot open {PRESIGNED}: boom", "unreadable")
    budget = BadClipBudget(0)
    with caplog.at_level(logging.WARNING, logger="alp_data.loader"), \
            pytest.raises(DataError) as info:
        budget.update([clip])
    assert _clean(caplog.text) and "s3://***@b/a.wav?token=***" in caplog.text
    assert _clean(str(info.value))
    assert all(_clean(c.path) and _clean(c.error) for c in budget.skipped)
    budget.write_jsonl(tmp_path / "skipped.jsonl")
    text = (tmp_path / "skipped.jsonl").read_text()
    assert _clean(text) and json.loads(text)["path"] == "s3://***@b/a.wav?token=***"


def test_shard_writing_and_index_errors_carry_no_secret(tmp_path):
    """write_shards lists unreadable clips in index.json and its error; read_index names the
    index it refuses: none of it may carry the URLs' credentials."""
    from alp_data.shards.index import read_index
    from alp_data.shards.writer import write_shards

    entries = [ManifestEntry("a", "nosuchproto://AKIAEXAMPLE:hunter2@b/a.wav", 1.0, 16000, ("x",)),
               ManifestEntry("b", PRESIGNED, 1.0, 16000, ("y",)),
               ManifestEntry("c", str(tmp_path / "missing.wav") + "?sig=c2lnbmF0dXJl", 1.0,
                             16000, ("z",))]
    out = tmp_path / "shards"
    with pytest.raises(DataError) as info:
        write_shards(entries, str(out), max_missing=0.0)
    text = "".join(traceback.format_exception(info.value))
    assert _clean(text), text
    skipped = json.loads((out / "index.json").read_text())["skipped"]
    assert len(skipped) == 3 and _clean(json.dumps(skipped)), skipped
    bad = tmp_path / "idx?sig=c2lnbmF0dXJl"
    bad.mkdir()
    for content in ({"format": "other"}, {"format": "alp-shards", "shards": [{"url": "a"}]}):
        (bad / "index.json").write_text(json.dumps(content))
        with pytest.raises(DataError) as info:
            read_index(str(bad))
        assert _clean("".join(traceback.format_exception(info.value))), str(info.value)
