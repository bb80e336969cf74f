"""Bad input: every kind of broken clip or manifest row is skipped with its reason and place,
counted, listed in full, and the budget stops the run exactly when it is exceeded."""

from __future__ import annotations

import importlib.util
import json
import logging
import uuid

import fsspec
import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import ConfigError, DataError
from alp_data.audio import BAD_CLIP_REASONS, AudioError, load_audio
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset, AudioConfig, BadClip
from alp_data.loader import SKIPPED_CLIPS_FILE, BadClipBudget, build_loader
from alp_data.manifest import BadRow, ManifestEntry, read_manifest, write_manifest
from alp_data.sources import ManifestSource, ManifestSourceConfig
from alp_data.transform import ClipTransform

RATE = 16000
SECONDS = 0.5


def _noise(rng, seconds=SECONDS, rate=RATE):
    return (0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def _write_cases(root) -> tuple[list[ManifestEntry], dict[str, str]]:
    """Two good clips and one clip per bad-input case; returns entries and id -> reason."""
    rng = np.random.default_rng(0)
    root.mkdir(exist_ok=True)

    def entry(name, path=None, rate=RATE):
        return ManifestEntry(name, str(path or root / f"{name}.wav"), SECONDS, rate, ("a cap",))

    entries, reasons = [], {}
    for name in ("good1", "good2"):
        sf.write(root / f"{name}.wav", _noise(rng), RATE)
        entries.append(entry(name))
    (root / "corrupt.wav").write_bytes(rng.bytes(4000))  # random bytes with a .wav name
    reasons["corrupt"] = "unreadable"
    sf.write(root / "full.wav", _noise(rng), RATE, subtype="PCM_16")
    raw = (root / "full.wav").read_bytes()
    (root / "truncated.wav").write_bytes(raw[:len(raw) // 2])  # a download cut mid-way
    reasons["truncated"] = "unreadable"
    sf.write(root / "full.flac", _noise(rng), RATE)
    raw = (root / "full.flac").read_bytes()
    (root / "truncated_flac.flac").write_bytes(raw[:len(raw) // 2])
    reasons["truncated_flac"] = "unreadable"
    sf.write(root / "empty.wav", np.zeros(0, np.float32), RATE)
    reasons["empty"] = "empty"
    sf.write(root / "silent.wav", np.zeros(int(SECONDS * RATE), np.float32), RATE)
    reasons["silent"] = "silent"
    nan = _noise(rng)
    nan[100] = np.nan
    sf.write(root / "nan.wav", nan, RATE, subtype="FLOAT")
    reasons["nan"] = "nonfinite"
    sf.write(root / "rate.wav", _noise(rng, rate=22050), 22050)  # the manifest says 16000
    reasons["rate"] = "sample_rate"
    reasons["missing"] = "missing"
    for name in reasons:
        suffix = ".flac" if name == "truncated_flac" else ".wav"
        entries.append(entry(name, root / f"{name}{suffix}"))
    entries.append(entry("nosuchproto", "nosuchproto://bucket/a.wav"))
    reasons["nosuchproto"] = "backend"
    if importlib.util.find_spec("s3fs") is None:
        entries.append(entry("s3", "s3://bucket/key/a.wav"))
        reasons["s3"] = "backend"
    return entries, reasons


@pytest.fixture
def cases(tmp_path):
    return _write_cases(tmp_path / "audio")


def test_reason_codes_are_documented():
    assert BAD_CLIP_REASONS == ("missing", "unreadable", "empty", "silent", "nonfinite",
                                "sample_rate", "backend", "tar_member", "row")
    assert BadClip(0, "x", "/x.wav", "old form").reason == ""  # old constructors still work


def test_each_case_through_clip_transform(cases):
    entries, reasons = cases
    transform = ClipTransform(train=True, seed=1)
    for entry in entries:
        out = transform(entry, 0, index=7)
        if entry.id.startswith("good"):
            assert isinstance(out, dict), out
            continue
        assert isinstance(out, BadClip), entry.id
        assert (out.reason, out.index, out.id, out.path) == (reasons[entry.id], 7, entry.id,
                                                             entry.audio), out
        assert entry.audio in out.error
    by_id = {e.id: transform(e, 0) for e in entries}
    assert "truncated" in by_id["truncated"].error and "declares" in by_id["truncated"].error
    assert "22050 Hz but the manifest says 16000 Hz" in by_id["rate"].error
    assert "'nosuchproto'" in by_id["nosuchproto"].error
    if "s3" in by_id:
        assert "'s3'" in by_id["s3"].error and "pip install s3fs" in by_id["s3"].error


def test_options_keep_silent_and_resampled_clips(cases):
    entries, _ = cases
    by_id = {e.id: e for e in entries}
    lax = ClipTransform(train=False, audio=AudioConfig(skip_silent=False,
                                                       check_sample_rate=False))
    silent = lax(by_id["silent"], 0)
    feats = silent["features"]
    assert isinstance(silent, dict) and float(feats.max() - feats.min()) < 1e-4
    rate = lax(by_id["rate"], 0)
    assert isinstance(rate, dict) and rate["duration"] == pytest.approx(SECONDS, abs=1e-3)


def test_audio_errors_carry_the_reason(cases):
    entries, reasons = cases
    for entry in entries:
        if entry.id in reasons and entry.id not in ("silent", "rate"):
            with pytest.raises(AudioError) as info:
                load_audio(entry.audio)
            assert info.value.reason == reasons[entry.id] and isinstance(info.value, DataError)
    with pytest.raises(AudioError, match="22050 Hz") as info:
        load_audio(next(e.audio for e in entries if e.id == "rate"), expected_rate=16000)
    assert info.value.reason == "sample_rate"


@pytest.mark.parametrize("num_workers", [0, 1])
def test_loader_keeps_going_and_budget_counts_each_reason(cases, tmp_path, caplog,
                                                          num_workers):
    entries, reasons = cases
    write_manifest(tmp_path / "m.jsonl", entries)
    dataset = AudioCaptionDataset(read_manifest(tmp_path / "m.jsonl"), train=True, seed=3)
    loader = build_loader(dataset, batch_size=3, shuffle=True, num_workers=num_workers,
                          collator=Collator(), seed=2)
    budget = BadClipBudget(max_bad=len(reasons))
    seen = []
    with caplog.at_level(logging.WARNING, logger="alp_data.loader"):
        for batch in loader:
            seen += batch["ids"]
            budget.update(batch["skipped"])
    assert sorted(seen) == ["good1", "good2"]
    assert {c.id: c.reason for c in budget.skipped} == reasons
    expected: dict[str, int] = {}
    for reason in reasons.values():
        expected[reason] = expected.get(reason, 0) + 1
    assert budget.summary() == expected
    for clip in budget.skipped:  # one warning per clip, with its reason
        assert f"skipping clip {clip.id} ({clip.path}) [{clip.reason}]" in caplog.text
    out = tmp_path / "run" / SKIPPED_CLIPS_FILE
    budget.write_jsonl(out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"]: r["reason"] for r in rows} == reasons
    assert set(rows[0]) == {"index", "id", "path", "error", "reason"}


def test_more_than_ten_bad_clips_are_all_listed(tmp_path):
    entries = [ManifestEntry(f"gone{i:02d}", str(tmp_path / f"gone{i:02d}.wav"), 1.0, RATE,
                             ("x",)) for i in range(13)]
    transform = ClipTransform(train=False)
    budget = BadClipBudget(max_bad=20)
    budget.update([transform(e, 0, index=i) for i, e in enumerate(entries)])
    budget.write_jsonl(tmp_path / SKIPPED_CLIPS_FILE)
    rows = [json.loads(line) for line in (tmp_path / SKIPPED_CLIPS_FILE).read_text().splitlines()]
    assert [r["id"] for r in rows] == [e.id for e in entries]
    assert [r["index"] for r in rows] == list(range(13))
    assert all(r["reason"] == "missing" for r in rows)
    assert budget.summary() == {"missing": 13}


def test_budget_error_exactly_when_exceeded(cases):
    entries, reasons = cases
    transform = ClipTransform(train=False)
    bad = [transform(e, 0) for e in entries if e.id in reasons]
    assert all(isinstance(c, BadClip) for c in bad)
    budget = BadClipBudget(max_bad=len(bad) - 1)
    for clip in bad[:-1]:
        budget.update([clip])  # at the budget: no error
    budget.update(bad[:3])  # clips met again are not counted twice
    assert budget.count == len(bad) - 1
    with pytest.raises(DataError) as info:
        budget.update([bad[-1]])
    msg = str(info.value)
    assert f"{len(bad)} clips failed to load, over the budget of {len(bad) - 1}" in msg
    assert "data.max_bad_clips" in msg and SKIPPED_CLIPS_FILE in msg
    assert "unreadable 3" in msg and "missing 1" in msg and "sample_rate 1" in msg
    assert bad[0].path in msg and f"and {len(bad) - 5} more" in msg
    exact = BadClipBudget(max_bad=len(bad))
    exact.update(bad)  # exactly at the budget: no error
    assert exact.count == len(bad)


# -- manifest rows -----------------------------------------------------------------------------
def _row(ident, **over):
    row = {"id": ident, "audio": f"{ident}.wav", "duration": 1.0, "sample_rate": RATE,
           "captions": ["x"]}
    row.update(over)
    return json.dumps(row).encode()


def _bad_manifest(path):
    lines = [
        _row("a"),
        json.dumps({"id": "b", "audio": "b.wav", "sample_rate": RATE,
                    "captions": ["x"]}).encode(),          # 2: duration missing
        b'{"id": "c", "audio": ',                           # 3: bad JSON
        _row("d"),
        b"",                                                # 5: blank, not a row
        _row("caf_").replace(b"_", b"\xe9"),                 # 6: latin-1, not UTF-8
        _row("a"),                                          # 7: duplicate id
        _row("h"),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_bad_rows_skipped_within_budget_with_line_numbers(tmp_path, caplog):
    path = _bad_manifest(tmp_path / "m.jsonl")
    bad: list[BadRow] = []
    with caplog.at_level(logging.WARNING, logger="alp_data.manifest"):
        entries = read_manifest(path, max_bad_rows=4, bad_rows=bad)
    assert [e.id for e in entries] == ["a", "d", "h"]
    assert [(r.line, r.key) for r in bad] == [(2, "duration"), (3, "<row>"), (6, "<row>"),
                                              (7, "id")]
    assert [r.id for r in bad] == ["b", "", "", "a"]
    assert "required key is missing" in bad[0].problem
    assert "invalid JSON" in bad[1].problem
    offset = path.read_bytes().index(b"\xe9")
    assert f"not UTF-8 at byte offset {offset}" in bad[2].problem
    assert "duplicate id 'a' (first on line 1)" in bad[3].problem
    assert all(r.path == str(path) for r in bad)
    assert str(bad[0]).startswith(f"{path}:2: key 'duration'")
    assert caplog.text.count("skipping manifest row") == 4
    assert [e.id for e in read_manifest(path, max_bad_rows=0.6)] == ["a", "d", "h"]  # 4 of 7


def test_bad_rows_over_budget_is_a_hard_error(tmp_path):
    path = _bad_manifest(tmp_path / "m.jsonl")
    bad: list[BadRow] = []
    with pytest.raises(DataError) as info:
        read_manifest(path, max_bad_rows=3, bad_rows=bad)
    msg = str(info.value)
    assert f"manifest {path}: 4 bad rows, over the budget of 3" in msg
    assert "raise max_bad_rows" in msg and "line 2: key 'duration'" in msg
    assert "line 7: key 'id'" in msg
    assert len(bad) == 4  # the rows met before the error are all recorded
    with pytest.raises(DataError, match="over the budget of 2"):
        read_manifest(path, max_bad_rows=0.3)  # floor(0.3 * 7 rows)
    with pytest.raises(DataError, match=r"m.jsonl:6: not UTF-8 at byte offset"):
        read_manifest(path)  # no budget: fails as before (the whole file is decoded first)
    path.write_bytes(path.read_bytes().replace(b"\xe9", b"e"))
    with pytest.raises(DataError, match=r"m.jsonl:2: key 'duration': required key is missing"):
        read_manifest(path)
    for wrong in (-1, 1.5, 0.0, True, "3"):
        with pytest.raises(ConfigError, match="max_bad_rows"):
            read_manifest(path, max_bad_rows=wrong)


def test_bad_rows_go_to_the_skipped_file(tmp_path):
    path = _bad_manifest(tmp_path / "m.jsonl")
    bad: list[BadRow] = []
    read_manifest(path, max_bad_rows=10, bad_rows=bad)
    budget = BadClipBudget(5)
    budget.update([BadClip(0, "x", "/data/x.wav", "audio file not found", "missing")])
    budget.write_jsonl(tmp_path / SKIPPED_CLIPS_FILE, bad_rows=bad)
    rows = [json.loads(line) for line in (tmp_path / SKIPPED_CLIPS_FILE).read_text().splitlines()]
    assert [r["reason"] for r in rows] == ["missing", "row", "row", "row", "row"]
    assert rows[1]["path"] == f"{path}:2" and rows[4]["id"] == "a"


@pytest.mark.parametrize(("encoding", "expected"), [
    ("utf-16", "is UTF-16 text"),
    ("utf-32", "is UTF-32 text"),
    ("utf-16-le", "holds NUL bytes"),
])
def test_manifest_not_utf8_at_all_names_the_file(tmp_path, encoding, expected):
    path = tmp_path / "wide.jsonl"
    path.write_bytes((_row("a").decode() + "\n").encode(encoding))
    for budget in (0, 10):  # no budget skips a whole file
        with pytest.raises(DataError, match=rf"manifest .*wide.jsonl {expected}.*UTF-8"):
            read_manifest(path, max_bad_rows=budget)


def test_utf8_bom_and_gzip_without_gz_name(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _row("a") + b"\n")
    assert [e.id for e in read_manifest(path)] == ["a"]
    gz = tmp_path / "m.jsonl"
    write_manifest(tmp_path / "m.jsonl.gz", read_manifest(path))
    gz.write_bytes((tmp_path / "m.jsonl.gz").read_bytes())
    with pytest.raises(DataError, match="gzip-compressed but its name does not end in .gz"):
        read_manifest(gz)


# -- URLs wherever paths work ------------------------------------------------------------------
def test_memory_url_manifest_end_to_end(tmp_path):
    base = f"memory://{uuid.uuid4().hex}"
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        with fsspec.open(f"{base}/audio/{name}.flac", "wb") as handle:
            sf.write(handle, _noise(rng), RATE, format="FLAC")
    entries = [ManifestEntry(n, f"{base}/audio/{n}.flac", SECONDS, RATE, (f"cap {n}",))
               for n in ("a", "b", "gone")]
    write_manifest(f"{base}/train.jsonl", entries[:2])
    write_manifest(f"{base}/test.jsonl.gz", entries)
    source = ManifestSource(ManifestSourceConfig(train=f"{base}/train.jsonl",
                                                 test=f"{base}/test.jsonl.gz"))
    paths = source.prepare(tmp_path)
    assert paths == {"train": f"{base}/train.jsonl", "test": f"{base}/test.jsonl.gz"}
    read = read_manifest(paths["test"])
    assert [e.audio for e in read] == [e.audio for e in entries]
    loader = build_loader(AudioCaptionDataset(read, train=False), batch_size=3, shuffle=False,
                          num_workers=0, collator=Collator())
    (batch,) = list(loader)
    assert batch["ids"] == ["a", "b"]
    assert [(c.id, c.reason) for c in batch["skipped"]] == [("gone", "missing")]
    with pytest.raises(ConfigError, match="no fsspec backend"):
        ManifestSource(ManifestSourceConfig(train="nosuchproto://b/m.jsonl",
                                            test=f"{base}/test.jsonl.gz")).prepare(tmp_path)
    with pytest.raises(DataError, match="nosuchproto://b/m.jsonl: no fsspec backend"):
        read_manifest("nosuchproto://b/m.jsonl")
