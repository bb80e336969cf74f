"""``alp_data.mix``: exclusion, id and content dedup, hours weighting, nested subsets, stats."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import ConfigError, DataError
from alp_data import mix as mixmod
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest
from alp_data.mix import MixConfig, MixSource, clip_key, mix, parse_fractions, parse_source

RATE = 8000


def _entry(ident, duration, audio="/nowhere/x.wav", captions=("a sound",), domain="sound",
           offset=0.0, corpus=""):
    return ManifestEntry(id=ident, audio=str(audio), duration=duration, sample_rate=RATE,
                         captions=tuple(captions), domain=domain, offset=offset, corpus=corpus)


def _manifest(path, entries):
    write_manifest(path, entries)
    return str(path)


def _samples(seed, n=4000):
    return np.random.default_rng(seed).integers(-3000, 3000, n).astype(np.int16)


def _run(tmp_path, sources, out="out", **options):
    options.setdefault("content_hash", False)
    return mix(MixConfig(sources=tuple(MixSource(*s) for s in sources),
                         out=str(tmp_path / out), **options))


def _ids(result):
    return [e.id for e in read_manifest(result.files["train"])]


def test_clip_key_normalises_youtube_and_audioset_forms():
    video = "-0Gj8-vB_q4"
    for form in (video, f"{video}_30", f"Y{video}.wav", f"Y{video}", f"{video}_000030",
                 f"Y{video}_30.000_40.000.wav", f" {video}_30.flac "):
        assert clip_key(form) == f"yt:{video}", form
    assert clip_key("YabcdefghiJ") == "yt:YabcdefghiJ"  # an 11-character id that starts with Y
    assert clip_key("YYabcdefghiJ_30") == "yt:YabcdefghiJ"
    assert clip_key("1000.wav") == "1000" and clip_key("Dog barking") == "Dog barking"
    assert clip_key("abcdefghijk_x") == "abcdefghijk_x"  # not a segment time


def test_parse_source_and_fractions():
    assert parse_source("ac=runs/ac/train.jsonl") == MixSource("ac", "runs/ac/train.jsonl")
    assert parse_source("cl=cl.jsonl.gz:2.5") == MixSource("cl", "cl.jsonl.gz", 2.5)
    assert parse_source("s=s3://b/t.jsonl") == MixSource("s", "s3://b/t.jsonl")
    assert parse_source("s=s3://b/t.jsonl:0.5").weight == 0.5
    with pytest.raises(ConfigError, match="weight 'x' is not a number.*NAME=MANIFEST"):
        parse_source("ac=a.jsonl:x")
    with pytest.raises(ConfigError, match="expected NAME=MANIFEST"):
        parse_source("a.jsonl")
    assert parse_fractions("0.1, 0.25,1") == (0.1, 0.25, 1.0)
    with pytest.raises(ConfigError, match="outside"):
        parse_fractions("0.5,0")


def test_config_errors_name_the_argument(tmp_path):
    a = MixSource("a", "a.jsonl")
    with pytest.raises(ConfigError, match="'a' is given twice"):
        MixConfig(sources=(a, a), out="o")
    with pytest.raises(ConfigError, match="--weighting 'loud'.*hours, clips, none"):
        MixConfig(sources=(a,), out="o", weighting="loud")
    with pytest.raises(ConfigError, match="--weighting none.*weights are given for b"):
        MixConfig(sources=(a, MixSource("b", "b.jsonl", 2.0)), out="o", weighting="none")
    with pytest.raises(ConfigError, match="weight 0.0"):
        MixConfig(sources=(MixSource("b", "b.jsonl", 0.0),), out="o")
    with pytest.raises(ConfigError, match="fraction 1.5"):
        MixConfig(sources=(a,), out="o", subsets=(0.5, 1.5))
    with pytest.raises(DataError, match="manifest not found"):
        _run(tmp_path, [("a", str(tmp_path / "missing.jsonl"))])


def test_dedup_by_normalised_id_keeps_the_first_source(tmp_path):
    ac = _manifest(tmp_path / "ac.jsonl", [
        _entry("abcdefghijk_30", 10), _entry("zyxwvutsrqp_0", 10), _entry("1000", 5)])
    wc = _manifest(tmp_path / "wc.jsonl", [
        _entry("Yabcdefghijk.wav", 10), _entry("Ylmnopqrstuv.wav", 10),
        _entry("Yzyxwvutsrqp_0.000_10.000", 10), _entry("1000", 5)])
    result = _run(tmp_path, [("ac", ac), ("wc", wc)])
    # the two AudioSet forms are dropped; "1000" is not a YouTube id (different corpora's
    # numbering), so both stay and the later one is renamed
    assert _ids(result) == ["abcdefghijk_30", "zyxwvutsrqp_0", "1000", "Ylmnopqrstuv.wav",
                            "wc/1000"]
    report = result.report
    assert report["sources"]["wc"]["duplicate_id"] == 2
    assert report["sources"]["ac"]["duplicate_id"] == 0
    assert report["removed"]["duplicates"] == [
        {"source": "wc", "id": "Yabcdefghijk.wav", "reason": "id", "key": "yt:abcdefghijk",
         "kept_source": "ac", "kept_id": "abcdefghijk_30"},
        {"source": "wc", "id": "Yzyxwvutsrqp_0.000_10.000", "reason": "id",
         "key": "yt:zyxwvutsrqp", "kept_source": "ac", "kept_id": "zyxwvutsrqp_0"}]
    assert report["renamed"] == [{"source": "wc", "id": "1000", "new_id": "wc/1000"}]
    train = read_manifest(result.files["train"])
    assert [e.corpus for e in train] == ["ac", "ac", "ac", "wc", "wc"]  # empty corpus named


def test_dedup_by_content_hash_wav_vs_flac(tmp_path):
    same, other, third = _samples(1), _samples(2), _samples(3)
    sf.write(tmp_path / "a.wav", same, RATE, subtype="PCM_16")
    sf.write(tmp_path / "b.wav", other, RATE, subtype="PCM_16")
    sf.write(tmp_path / "x.flac", same, RATE)                        # a's samples as FLAC
    sf.write(tmp_path / "y.flac", third, RATE)                       # different audio
    sf.write(tmp_path / "long.flac", np.concatenate([_samples(4, 2000), other]), RATE)
    (tmp_path / "broken.flac").write_bytes(b"not audio")
    one = _manifest(tmp_path / "one.jsonl", [_entry("a", 0.5, tmp_path / "a.wav"),
                                             _entry("b", 0.5, tmp_path / "b.wav")])
    two = _manifest(tmp_path / "two.jsonl", [
        _entry("x", 0.5, tmp_path / "x.flac"), _entry("y", 0.5, tmp_path / "y.flac"),
        _entry("seg", 0.5, tmp_path / "long.flac", offset=0.25),     # b inside a longer file
        _entry("head", 0.25, tmp_path / "long.flac"),
        _entry("broken", 0.5, tmp_path / "broken.flac")])
    result = _run(tmp_path, [("one", one), ("two", two)], content_hash=True)
    assert _ids(result) == ["a", "b", "y", "head", "broken"]
    dups = result.report["removed"]["duplicates"]
    assert [(d["id"], d["kept_id"], d["reason"]) for d in dups] == [
        ("x", "a", "content"), ("seg", "b", "content")]
    assert dups[0]["key"] == mixmod.content_hash(str(tmp_path / "a.wav"), 0.0, 0.5)
    assert mixmod.content_hash(str(tmp_path / "y.flac")) != dups[0]["key"]
    assert result.report["sources"]["two"]["duplicate_content"] == 2
    assert result.report["sources"]["two"]["unreadable"] == 1
    (bad,) = result.report["unreadable"]
    assert bad["id"] == "broken" and "broken.flac" in bad["error"]
    without = _run(tmp_path, [("one", one), ("two", two)], out="plain")
    assert len(_ids(without)) == 7  # --no-content-hash decodes nothing


def test_exclusion_lists_txt_and_csv(tmp_path):
    ac = _manifest(tmp_path / "ac.jsonl", [
        _entry("abcdefghijk_30", 10), _entry("bbbbbbbbbbb_0", 10), _entry("ccccccccccc_0", 10),
        _entry("Clotho file", 10)])
    wc = _manifest(tmp_path / "wc.jsonl", [_entry("Yddddddddddd.wav", 10),
                                           _entry("Yeeeeeeeeeee.wav", 10)])
    txt = tmp_path / "eval.txt"
    txt.write_text("# AudioCaps test\n\nYabcdefghijk.wav\nddddddddddd_30\nunused_id\n")
    csv_file = tmp_path / "musiccaps.csv"
    csv_file.write_text("ytid,start_s,end_s,caption\nccccccccccc,30,40,\"a, b\"\n"
                        "ddddddddddd,0,10,x\n")
    result = _run(tmp_path, [("ac", ac), ("wc", wc)], exclude=(str(txt), str(csv_file)))
    assert _ids(result) == ["bbbbbbbbbbb_0", "Clotho file", "Yeeeeeeeeeee.wav"]
    report = result.report
    assert report["sources"]["ac"]["excluded"] == 2 and report["sources"]["wc"]["excluded"] == 1
    assert report["exclude_files"][str(txt)] == {"listed": 3, "removed": 2,
                                                 "removed_per_source": {"ac": 1, "wc": 1}}
    assert report["exclude_files"][str(csv_file)] == {"listed": 2, "removed": 1,
                                                      "removed_per_source": {"ac": 1}}
    assert [(r["id"], r["file"]) for r in report["removed"]["excluded"]] == [
        ("abcdefghijk_30", str(txt)), ("ccccccccccc_0", str(csv_file)),
        ("Yddddddddddd.wav", str(txt))]


def test_musiccaps_public_csv_excludes_only_its_eval_rows(tmp_path):
    # musiccaps-public.csv lists all 5,521 clips; only those flagged is_audioset_eval are the
    # evaluation set (every MusicCaps training clip used to be excluded too)
    mc = _manifest(tmp_path / "mc.jsonl", [_entry("aaaaaaaaaaa_30", 10),
                                           _entry("bbbbbbbbbbb_0", 10)])
    public = tmp_path / "musiccaps-public.csv"
    public.write_text("ytid,start_s,end_s,audioset_positive_labels,aspect_list,caption,"
                      "author_id,is_balanced_subset,is_audioset_eval\n"
                      "aaaaaaaaaaa,30,40,/m/0,\"['x']\",a song,1,False,False\n"
                      "bbbbbbbbbbb,0,10,/m/0,\"['y']\",a tune,2,True,True\n")
    result = _run(tmp_path, [("mc", mc)], exclude=(str(public),))
    assert _ids(result) == ["aaaaaaaaaaa_30"]
    assert result.report["exclude_files"][str(public)]["listed"] == 1


def test_credentials_in_manifest_and_list_urls_stay_out_of_the_report(tmp_path):
    import fsspec

    secret = "memory://KEY:SuperSecret9@bkt"
    with fsspec.open(f"{secret}/ac.jsonl", "wt") as handle:
        handle.write(json.dumps(_entry("abcdefghijk_30", 10).to_row()) + "\n")
    with fsspec.open(f"{secret}/eval.txt", "wt") as handle:
        handle.write("zzzzzzzzzzz\n")
    result = _run(tmp_path, [("ac", f"{secret}/ac.jsonl")], exclude=(f"{secret}/eval.txt",))
    for name in ("mix_report.json", "mix_report.md"):
        assert "SuperSecret9" not in (tmp_path / "out" / name).read_text()
    assert "SuperSecret9" not in json.dumps(result.report)
    with pytest.raises(DataError) as err:
        _run(tmp_path, [("ac", f"{secret}/ac.jsonl")], out="o2",
             exclude=(f"{secret}/missing.txt",))
    assert "SuperSecret9" not in str(err.value) and "missing.txt" in str(err.value)


def test_vggsound_csv_as_published_excludes_its_test_rows(tmp_path):
    # no header, rows "ytid,start,label,split": it needed a header added, and then every row
    # (the training ones too) was excluded
    vgg = _manifest(tmp_path / "vgg.jsonl", [_entry("aaaaaaaaaaa_10", 10),
                                             _entry("bbbbbbbbbbb_1", 10)])
    listed = tmp_path / "vggsound.csv"
    listed.write_text('aaaaaaaaaaa,10,"dog barking",train\nbbbbbbbbbbb,1,people marching,test\n')
    result = _run(tmp_path, [("vgg", vgg)], exclude=(str(listed),))
    assert _ids(result) == ["aaaaaaaaaaa_10"]


def test_exclusion_file_errors_name_file_line_and_columns(tmp_path):
    ac = _manifest(tmp_path / "ac.jsonl", [_entry("abcdefghijk_30", 10)])
    bad_csv = tmp_path / "vggsound_renamed.csv"
    bad_csv.write_text("---g-f_I2yQ,1,people marching,test\n")
    with pytest.raises(DataError, match=r"vggsound_renamed.csv:1: header .* youtube_id, ytid, id, "
                                        "clip_id"):
        _run(tmp_path, [("ac", ac)], exclude=(str(bad_csv),))
    bad_txt = tmp_path / "ids.txt"
    bad_txt.write_text("# ok\nabc\nabc def\n")
    with pytest.raises(DataError, match=r"ids.txt:3: expected one id per line"):
        _run(tmp_path, [("ac", ac)], exclude=(str(bad_txt),))


def _hours(entries):
    return math.fsum(e.duration for e in entries) / 3600


def test_hours_weighting_against_hand_calculation(tmp_path):
    big = _manifest(tmp_path / "big.jsonl", [_entry(f"b{i}", 900) for i in range(8)])  # 2 h
    small = _manifest(tmp_path / "small.jsonl", [_entry(f"s{i}", 900) for i in range(4)])  # 1 h
    even = read_manifest(_run(tmp_path, [("big", big), ("small", small)]).files["train"])
    assert len(even) == 12 and _hours(even) == 3.0
    # big at weight 0.5 -> 1 h = 4 clips of 900 s; small at 2.5 -> 2.5 h = 10 clips
    result = _run(tmp_path, [("big", big, 0.5), ("small", small, 2.5)], out="w")
    train = read_manifest(result.files["train"])
    per = {n: [e for e in train if e.corpus == n] for n in ("big", "small")}
    assert len(per["big"]) == 4 and _hours(per["big"]) == 1.0
    assert len(per["small"]) == 10 and _hours(per["small"]) == 2.5
    ids = {e.id for e in per["small"]}
    assert all(f"s{i}" in ids and f"s{i}#r1" in ids for i in range(4))
    assert sum(f"s{i}#r2" in ids for i in range(4)) == 2 and len(ids) == 10
    assert result.report["sources"]["big"]["output"]["hours"] == 1.0
    # unequal durations: within one clip's duration above half the hours
    durations = [600, 1200, 900, 300, 1500, 1200, 600, 1200]                    # 7500 s
    mixed = _manifest(tmp_path / "mixed.jsonl", [_entry(f"m{i}", d)
                                                 for i, d in enumerate(durations)])
    half = read_manifest(_run(tmp_path, [("m", mixed, 0.5)], out="h").files["train"])
    assert 3750 <= sum(e.duration for e in half) < 3750 + 1500
    other_seed = _run(tmp_path, [("m", mixed, 0.5)], out="h2", seed=1).files["train"]
    assert {e.id for e in read_manifest(other_seed)} != {e.id for e in half}
    by_clips = _run(tmp_path, [("m", mixed, 0.5)], out="c", weighting="clips")
    assert len(read_manifest(by_clips.files["train"])) == 4
    once = _run(tmp_path, [("m", mixed), ("big", big)], out="n", weighting="none")
    assert len(read_manifest(once.files["train"])) == 16


def test_nested_subsets_are_nested_and_sized(tmp_path):
    rng = np.random.default_rng(0)
    durations = {"a": rng.integers(5, 30, 30), "b": rng.integers(5, 30, 20)}
    sources = [(n, _manifest(tmp_path / f"{n}.jsonl", [_entry(f"{n}{i}", float(d))
                                                       for i, d in enumerate(ds)]))
               for n, ds in durations.items()]
    result = _run(tmp_path, sources, subsets=(0.5, 0.1, 0.25, 1.0))
    train = read_manifest(result.files["train"])
    subsets = {f: read_manifest(result.files[f"subset_{f:g}"]) for f in (0.1, 0.25, 0.5, 1.0)}
    assert [e.id for e in subsets[1.0]] == [e.id for e in train]
    order = [0.1, 0.25, 0.5, 1.0]
    for small, large in zip(order, order[1:]):
        assert {e.id for e in subsets[small]} < {e.id for e in subsets[large]}
    for fraction in order[:-1]:
        for name, ds in durations.items():
            got = sum(e.duration for e in subsets[fraction] if e.corpus == name)
            assert fraction * ds.sum() <= got < fraction * ds.sum() + ds.max()
        assert result.report["subsets"][f"{fraction:g}"]["clips"] == len(subsets[fraction])
    rows = {e.id: e for e in train}
    assert all(rows[e.id] == e for e in subsets[0.5])
    other = _run(tmp_path, sources, out="o", subsets=(0.5,), seed=7)
    assert ({e.id for e in read_manifest(other.files["subset_0.5"])}
            != {e.id for e in subsets[0.5]})
    clips = _run(tmp_path, sources, out="c", subsets=(0.25,), weighting="clips")
    picked = read_manifest(clips.files["subset_0.25"])
    assert sum(e.corpus == "a" for e in picked) == 8 and sum(e.corpus == "b" for e in picked) == 5


def test_stats_match_hand_counts(tmp_path):
    ac = _manifest(tmp_path / "ac.jsonl", [
        _entry("c1", 1800, captions=("A dog barks.", "Dog's bark is LOUD and loud")),
        _entry("c2", 900, captions=("Rain falls",), corpus="AudioCaps")])
    mc = _manifest(tmp_path / "mc.jsonl", [
        _entry("m1", 3600, captions=("Soft piano music plays", "piano"), domain="music"),
        _entry("m2", 360, captions=("A man speaks",), domain="")])
    result = _run(tmp_path, [("ac", ac), ("mc", mc)])
    report = result.report
    ac_stats, mc_stats = report["sources"]["ac"]["output"], report["sources"]["mc"]["output"]
    assert (ac_stats["clips"], ac_stats["captions"], ac_stats["hours"]) == (2, 3, 0.75)
    assert ac_stats["vocabulary"] == 10  # a dog barks dog's bark is loud and rain falls
    assert ac_stats["caption_words"] == {"mean": round(11 / 3, 4), "median": 3.0, "p95": 5.7}
    assert mc_stats["vocabulary"] == 7 and mc_stats["hours"] == 1.1
    assert mc_stats["caption_words"] == {"mean": round(8 / 3, 4), "median": 3.0, "p95": 3.9}
    assert report["sources"]["mc"]["domain_hours"] == {"music": 1.0, "unknown": 0.1}
    assert {d: s["hours"] for d, s in report["domains"].items()} == {
        "music": 1.0, "sound": 0.75, "unknown": 0.1}
    assert report["domains"]["music"]["caption_words"] == {"mean": 2.5, "median": 2.5,
                                                           "p95": 3.85}
    assert report["domains"]["music"]["vocabulary"] == 4
    total = report["total"]
    assert total["vocabulary"] == 16 and total["captions"] == 6 and total["hours"] == 1.85
    assert total["caption_words"] == {"mean": round(19 / 6, 4), "median": 3.0, "p95": 5.5}
    assert json.loads((tmp_path / "out" / "mix_report.json").read_text()) == report
    md = (tmp_path / "out" / "mix_report.md").read_text()
    assert "| ac | 2 | 3 | 0.750 | 3.6667 | 3.0 | 5.7 | 10 |" in md
    assert [e.corpus for e in read_manifest(result.files["train"])][:2] == ["ac", "AudioCaps"]


def _corpus(tmp_path):
    """Two sources with real audio: 8 + 6 clips, one cross-source copy, one YouTube overlap."""
    for i in range(8):
        sf.write(tmp_path / f"a{i}.wav", _samples(10 + i, 800), RATE, subtype="PCM_16")
    for i in range(6):
        sf.write(tmp_path / f"b{i}.flac", _samples(20 + i if i else 10, 800), RATE)
    a = _manifest(tmp_path / "a.jsonl", [_entry(f"a{i}{'a' * 9}_{i}", 0.1, tmp_path / f"a{i}.wav",
                                                captions=(f"clip {i} of a",))
                                         for i in range(8)])
    b = _manifest(tmp_path / "b.jsonl.gz", [_entry(f"b{i}", 0.1, tmp_path / f"b{i}.flac",
                                                   domain="music") for i in range(6)]
                  + [_entry(f"Ya1{'a' * 9}.wav", 0.1, tmp_path / "a1.wav")])
    return [("a", a, 0.5), ("b", b, 1.5)]


def test_outputs_are_byte_identical_for_any_hash_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(mixmod, "HASH_CHUNK", 3)  # several tasks, so two workers really run
    sources = _corpus(tmp_path)
    runs = [_run(tmp_path, sources, out=f"w{w}", hash_workers=w, content_hash=True,
                 subsets=(0.3, 0.6), compress=True) for w in (1, 2)]
    one, two = (r.files for r in runs)
    assert set(one) == {"train", "subset_0.3", "subset_0.6", "chart", "report", "summary"}
    for key in one:
        assert Path(one[key]).read_bytes() == Path(two[key]).read_bytes(), key
    report = runs[0].report
    assert report["sources"]["b"]["duplicate_content"] == 1
    assert report["sources"]["b"]["duplicate_id"] == 1
    assert len(read_manifest(one["train"])) == 4 + 8  # a: half of 8; b: 1.5 x (7 - 2)


def test_chart_is_a_png_and_skipped_without_matplotlib(tmp_path, monkeypatch):
    sources = [(n, p) for n, p, _ in _corpus(tmp_path)]
    result = _run(tmp_path, sources)
    png = (tmp_path / "out" / "mix_report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    assert result.report["notes"] == []
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    bare = _run(tmp_path, sources, out="bare")
    assert not (tmp_path / "bare" / "mix_report.png").exists() and "chart" not in bare.files
    assert "matplotlib is not installed" in bare.report["notes"][0]
    assert "alp-data[report]" in (tmp_path / "bare" / "mix_report.md").read_text()


@pytest.mark.distributed
def test_content_hashes_on_a_two_worker_dask_cluster_give_the_same_mix(tmp_path):
    pytest.importorskip("distributed")
    import dataclasses

    rng = np.random.default_rng(5)
    wave = rng.integers(-3000, 3000, 4000).astype(np.int16)  # the same samples in both codecs
    a, b = tmp_path / "a.wav", tmp_path / "b.flac"
    sf.write(a, wave, 8000, subtype="PCM_16")
    sf.write(b, wave, 8000, subtype="PCM_16")
    for name, path, ident in (("one", a, "x1"), ("two", b, "x2")):
        write_manifest(tmp_path / f"{name}.jsonl",
                       [ManifestEntry(ident, str(path), 0.5, 8000, (f"{name} cap",))])
    sources = (MixSource("one", str(tmp_path / "one.jsonl")),
               MixSource("two", str(tmp_path / "two.jsonl")))
    local = MixConfig(sources=sources, out=str(tmp_path / "local"))
    dask = dataclasses.replace(local, out=str(tmp_path / "dask"), hash_workers=2,
                               backend="dask")
    mix(local)
    mix(dask)
    text = (tmp_path / "local" / "train.jsonl").read_text()
    assert text == (tmp_path / "dask" / "train.jsonl").read_text()
    assert text.count("\n") == 1  # the FLAC copy of the same samples was removed


def test_unreadable_urls_are_kept_and_listed_without_their_credentials(tmp_path):
    """A presigned URL that does not resolve and one whose fsspec backend is not installed:
    both stay in the mix as unreadable (the missing backend aborted the whole mix), listed
    in the report with their secrets scrubbed (they were written as given)."""
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed: the backend is not missing")
    except ImportError:
        pass
    sf.write(tmp_path / "a.wav", _samples(1), RATE, subtype="PCM_16")
    src = _manifest(tmp_path / "one.jsonl", [
        _entry("a", 0.5, tmp_path / "a.wav"),
        _entry("gone", 0.5, f"{tmp_path}/gone.wav?X-Amz-Signature=SIGSECRET"),
        _entry("proto", 0.5, "s3://AKIAKEY:TOPSECRET@bucket/b.wav")])  # ImportError: s3fs
    result = _run(tmp_path, [("one", src)], content_hash=True)
    assert _ids(result) == ["a", "gone", "proto"]
    assert [b["id"] for b in result.report["unreadable"]] == ["gone", "proto"]
    written = (tmp_path / "out" / "mix_report.json").read_text()
    for secret in ("SIGSECRET", "TOPSECRET", "AKIAKEY"):
        assert secret not in json.dumps(result.report) and secret not in written
