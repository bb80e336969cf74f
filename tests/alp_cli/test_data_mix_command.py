"""``alp data mix`` end to end: real audio and manifests in, mixed corpus and reports out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from alp_cli.main import main
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest

RATE = 8000


def _corpus(root):
    """AudioCaps-like (4 clips, WAV) and WavCaps-like (4 clips, FLAC): one clip of the same
    video, one copy of the same samples, one AudioCaps-test clip in each."""
    rng = np.random.default_rng(0)
    waves = [rng.integers(-3000, 3000, 800).astype(np.int16) for _ in range(7)]
    ac_ids = ["aaaaaaaaaaa_30", "bbbbbbbbbbb_0", "ccccccccccc_10", "ddddddddddd_0"]
    wc_ids = ["Yaaaaaaaaaaa.wav", "copy_of_b", "Yeeeeeeeeeee.wav", "Yfffffffffff.wav"]
    wc_waves = [waves[4], waves[1], waves[5], waves[6]]
    ac, wc = [], []
    for ident, wave in zip(ac_ids, waves[:4]):
        sf.write(root / f"{ident}.wav", wave, RATE, subtype="PCM_16")
        ac.append(ManifestEntry(id=ident, audio=str(root / f"{ident}.wav"), duration=0.1,
                                sample_rate=RATE, captions=(f"sound {ident[0]}",), domain="sound"))
    for ident, wave in zip(wc_ids, wc_waves):
        sf.write(root / f"{ident}.flac", wave, RATE)
        wc.append(ManifestEntry(id=ident, audio=str(root / f"{ident}.flac"), duration=0.1,
                                sample_rate=RATE, captions=("a noise",)))
    write_manifest(root / "ac" / "train.jsonl", ac)
    write_manifest(root / "wc" / "train.jsonl.gz", wc)
    (root / "test.csv").write_text("audiocap_id,youtube_id,start_time,caption\n"
                                   "1,ddddddddddd,0,x\n2,fffffffffff,30,y\n")
    return [f"ac={root / 'ac' / 'train.jsonl'}", f"wc={root / 'wc' / 'train.jsonl.gz'}:2"]


def test_mix_command_end_to_end(tmp_path, capsys):
    sources = _corpus(tmp_path)
    out = tmp_path / "mixed"
    assert main(["data", "mix", *sources, "--out", str(out), "--exclude",
                 str(tmp_path / "test.csv"), "--subsets", "0.5,0.25", "--hash-workers", "1"]) == 0
    text = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line.strip()}
    # input, excluded, dup id, dup audio, unreadable, output clips, hours
    assert rows["ac"] == ["4", "1", "0", "0", "0", "3", "0.000"]
    assert rows["wc"] == ["4", "1", "1", "1", "0", "2", "0.000"]  # 1 clip kept, weight 2
    train = read_manifest(out / "train.jsonl")
    assert [e.id for e in train] == ["aaaaaaaaaaa_30", "bbbbbbbbbbb_0", "ccccccccccc_10",
                                     "Yeeeeeeeeeee.wav", "Yeeeeeeeeeee.wav#r1"]
    assert [e.corpus for e in train] == ["ac"] * 3 + ["wc"] * 2
    assert len(read_manifest(out / "train_subset_0.25.jsonl")) == 2  # one per source
    report = json.loads((out / "mix_report.json").read_text())
    assert report["exclude_files"][str(tmp_path / "test.csv")]["removed"] == 2
    assert {d["id"]: d["reason"] for d in report["removed"]["duplicates"]} == {
        "Yaaaaaaaaaaa.wav": "id", "copy_of_b": "content"}
    assert report["domains"]["unknown"]["clips"] == 2
    assert (out / "mix_report.md").stat().st_size > 0
    assert (out / "mix_report.png").read_bytes()[:4] == b"\x89PNG"
    assert f"train: {out / 'train.jsonl'}" in text


@pytest.mark.parametrize("extra, message", [
    (["ac=a.jsonl:heavy"], "weight 'heavy' is not a number"),
    (["a.jsonl"], "expected NAME=MANIFEST[:WEIGHT]"),
    (["--weighting", "loud"], "--weighting 'loud' is not known; accepted: hours, clips, none"),
    (["--subsets", "0.5,1.5"], "--subsets: fraction 1.5 is outside (0, 1]"),
    (["--subsets", "half"], "--subsets: 'half' is not a number"),
    (["SRC"], "source name 'ac' is given twice"),
    (["--hash-workers", "0"], "--hash-workers must be >= 1"),
    (["--exclude", "EVAL"], "header ['ytid_x'] has no id column; accepted columns: youtube_id"),
])
def test_mix_command_errors_name_the_problem(tmp_path, capsys, extra, message):
    sources = _corpus(tmp_path)
    (tmp_path / "eval.csv").write_text("ytid_x\nabc\n")
    extra = [sources[0] if e == "SRC" else str(tmp_path / "eval.csv") if e == "EVAL" else e
             for e in extra]
    assert main(["data", "mix", *sources, *extra, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alp data: error:") and message in err
