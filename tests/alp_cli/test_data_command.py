"""``alp data prepare`` runs a corpus recipe end to end and prints a per-split summary."""

from __future__ import annotations

import csv

import numpy as np
import soundfile as sf

from alp_cli.main import main
from alp_data.manifest import read_manifest


def _clotho(root):
    head = ["file_name", *(f"caption_{i}" for i in range(1, 6))]
    for name, files in (("development", ["a.wav", "b.wav", "gone.wav"]),
                        ("evaluation", ["c.wav"])):
        with open(root / f"clotho_captions_{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(head)
            writer.writerows([[f, *(f"{f} {i}" for i in range(5))] for f in files])
        (root / name).mkdir()
        for f in files:
            if f != "gone.wav":
                sf.write(str(root / name / f), np.zeros(36000, "float32"), 8000)


def test_prepare_clotho_writes_gzipped_manifests_and_summary(tmp_path, capsys):
    _clotho(tmp_path)
    out = tmp_path / "out"
    assert main(["data", "prepare", "clotho", "--root", str(tmp_path), "--out", str(out),
                 "compress=true", "max_missing=0.3"]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert lines["train"][1:] == ["2", "10", "0.003"]  # 2 clips x 4.5 s = 0.0025 h
    assert lines["test"][1:] == ["1", "5", "0.001"]
    assert "skipped 1 of 4 listed clips (budget 1)" in text
    train = read_manifest(out / "train.jsonl.gz")
    assert [e.id for e in train] == ["a", "b"] and train[0].captions[4] == "a.wav 4"


def test_prepare_errors_name_the_cause(tmp_path, capsys):
    _clotho(tmp_path)
    assert main(["data", "prepare", "clotho", "--root", str(tmp_path), "--out",
                 str(tmp_path / "o"), "max_missing=0"]) == 2
    assert "gone.wav" in capsys.readouterr().err
    assert main(["data", "prepare", "nosuch", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown data source 'nosuch'" in err and "audiocaps" in err
    assert main(["data", "prepare", "clotho", "--root", str(tmp_path), "--out",
                 str(tmp_path / "o"), "colour=red"]) == 2
    assert "colour" in capsys.readouterr().err


def test_prepare_wavcaps_with_its_blacklist(tmp_path, capsys):
    import json

    (tmp_path / "json_files/FreeSound").mkdir(parents=True)
    (tmp_path / "json_files/FreeSound/fsd_final.json").write_text(json.dumps({"data": [
        {"id": "5", "caption": "a door"}, {"id": "6", "caption": "a bird"}]}))
    (tmp_path / "bl.json").write_text(json.dumps({"FreeSound": ["6"]}))
    (tmp_path / "audio/FreeSound").mkdir(parents=True)
    for ident in ("5", "6"):
        sf.write(str(tmp_path / f"audio/FreeSound/{ident}.flac"), np.full(800, 0.1, "float32"),
                 8000)
    out = tmp_path / "out"
    assert main(["data", "prepare", "wavcaps", "--root", str(tmp_path), "--out", str(out),
                 "subset=FreeSound", "blacklist=[bl.json]"]) == 0
    assert "left out 1 clips on purpose" in capsys.readouterr().out
    assert [e.id for e in read_manifest(out / "train.jsonl")] == ["5"]


def test_a_plugin_source_whose_factory_cannot_be_imported_is_named(site, tmp_path, capsys):
    site("fake-corpus", "fake_corpus", """
from alp_core import DataSourceRecord, EmptyConfig, hookimpl
@hookimpl
def alp_data_sources():
    return [DataSourceRecord("my-corpus", EmptyConfig, "fake_corpus:bulid")]
""")
    assert main(["data", "prepare", "my-corpus", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "data source 'my-corpus' of plugin 'fake_corpus' (fake-corpus)" in err
    assert "'fake_corpus:bulid', which cannot be imported" in err and "Traceback" not in err
