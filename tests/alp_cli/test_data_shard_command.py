"""`alp data shard`: the command writes the shards and index that the stream reads."""

from __future__ import annotations

import json

from alp_cli.main import main
from alp_data.demo import DemoCorpusConfig, generate_demo_corpus
from alp_data.manifest import read_manifest
from alp_data.shards.index import read_index


def test_shard_command_writes_every_clip_and_an_index(tmp_path, capsys):
    paths = generate_demo_corpus(tmp_path / "demo", DemoCorpusConfig(
        num_clips=12, min_seconds=0.5, max_seconds=0.8, num_workers=1))
    clips = len(read_manifest(paths["train"]))
    out = tmp_path / "shards"
    assert main(["data", "shard", str(paths["train"]), "--out", str(out), "--max-clips", "4",
                 "--workers", "2"]) == 0
    index = read_index(str(out))
    assert index.clips == clips and len(index.shards) == -(-clips // 4)
    assert json.loads((out / "index.json").read_text())["clips"] == clips
    assert str(out) in capsys.readouterr().out
    assert main(["data", "shard", str(tmp_path / "missing.jsonl"), "--out",
                 str(tmp_path / "x")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
