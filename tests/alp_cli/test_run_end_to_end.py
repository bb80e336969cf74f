"""Tiny end-to-end ``alp run``s: real FLAC files, real tokenizer, real training and evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from alp_cli.main import main

SMOKE = str(Path(__file__).parents[2] / "configs" / "smoke.yaml")


def run_alp(*args: str) -> int:
    return main(["run", *args])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    code = run_alp(SMOKE, f"output_dir={out / 'run'}", f"data.cache_dir={out / 'cache'}")
    assert code == 0
    return out


def test_run_writes_config_metrics_checkpoint_and_report(smoke_run):
    run = smoke_run / "run"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["name"] == "smoke" and config["model"]["audio_encoder"]["d_model"] == 32
    lines = (run / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[0] == "start" and "train" in events and events[-1] == "eval_end"
    assert (run / "checkpoint" / "model.safetensors").stat().st_size > 0
    meta = json.loads((run / "checkpoint" / "checkpoint.json").read_text())
    assert meta["config"]["name"] == "smoke" and meta["state"]["epoch"] == 1  # epochs completed
    report = json.loads((run / "report.json").read_text())
    assert report["models"] == ["pretrained", "random-init"]
    for model in report["models"]:
        tasks = report["results"][model]
        assert "retrieval" in tasks and "probe/domain" in tasks
        assert set(tasks["retrieval"]["metrics"]) >= {"a2t_R@1", "a2t_R@10", "t2a_mAP@10"}
        assert report["summary"][model]["probe_average"] is not None
    md = (run / "report.md").read_text()
    assert "pretrained" in md and "random-init" in md and "a2t_R@1" in md


def test_features_on_the_device_give_the_same_run_and_report(smoke_run, tmp_path):
    """``data.features_on=device`` on the CPU: training and evaluation see the workers' very
    features, so the logged loss, the trained weights and every metric are equal."""
    run = tmp_path / "run"
    code = run_alp(SMOKE, f"output_dir={run}", f"data.cache_dir={smoke_run / 'cache'}",
                   "data.features_on=device")
    assert code == 0

    def losses(folder):
        records = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
        return [(r["step"], r["loss"]) for r in records if r["event"] == "train"]

    assert losses(run) == losses(smoke_run / "run") and losses(run)
    ours_w = load_file(str(run / "checkpoint" / "model.safetensors"))
    theirs_w = load_file(str(smoke_run / "run" / "checkpoint" / "model.safetensors"))
    assert ours_w.keys() == theirs_w.keys() and all(ours_w[k].equal(theirs_w[k]) for k in ours_w)
    ours = json.loads((run / "report.json").read_text())
    theirs = json.loads((smoke_run / "run" / "report.json").read_text())
    for model in theirs["models"]:
        for task, result in theirs["results"][model].items():
            assert ours["results"][model][task]["metrics"] == result["metrics"], (model, task)
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["features_on"] == "device"


def test_checkpoint_loads_back_into_a_fresh_model(smoke_run):
    import torch

    from alp_models.configs import ProjectionConfig
    from alp_models.two_tower import AudioTextModel
    from alp_train.checkpoint import load_weights as load_checkpoint
    from alp_train.config import resolve_run

    run = smoke_run / "run"
    meta = load_checkpoint(run / "checkpoint")
    resolved = resolve_run(meta["config"])
    model = AudioTextModel(resolved.audio_encoder.build(), resolved.text_encoder.build(),
                           ProjectionConfig(embed_dim=meta["config"]["model"]["embed_dim"]))
    before = [p.clone() for p in model.parameters()]
    load_checkpoint(run / "checkpoint", {"model": model})
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert any(changed)


def test_existing_run_folder_is_never_overwritten(smoke_run, tmp_path):
    run = smoke_run / "run"
    first = (run / "report.json").read_bytes()
    code = run_alp(SMOKE, f"output_dir={run}", f"data.cache_dir={smoke_run / 'cache'}",
                   "train.max_steps=1", "eval.baseline=false")
    assert code == 0
    assert (run / "report.json").read_bytes() == first
    assert (smoke_run / "run-1" / "report.json").is_file()


def _manifest_corpus(smoke_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Copy the cached demo corpus and return its train/test manifests."""
    [cached] = [p for p in (smoke_run / "cache").iterdir() if (p / "corpus.json").is_file()]
    corpus = tmp_path / "corpus"
    shutil.copytree(cached, corpus)
    return corpus / "train.jsonl", corpus / "test.jsonl"


def test_missing_and_corrupt_clips_are_skipped_and_counted(smoke_run, tmp_path):
    train, test = _manifest_corpus(smoke_run, tmp_path)
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    missing = rows[0]["audio"] = "audio/does-not-exist.flac"
    corrupt = train.parent / rows[1]["audio"]
    corrupt.write_bytes(b"not a flac file at all")
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = run_alp(SMOKE, "data.source={name: manifest, train: %s, test: %s}" % (train, test),
                   f"output_dir={tmp_path / 'run'}", "data.max_bad_clips=2", "train.epochs=3")
    assert code == 0  # met in 3 epochs and 2 evaluation passes, still only 2 distinct clips
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    skipped = report["meta"]["skipped_paths"]
    assert report["meta"]["skipped_clips"] == len(skipped) == 2
    assert any(missing.split("/")[-1] in p for p in skipped)
    assert any(str(corrupt) in p for p in skipped)


def test_bad_clip_budget_exceeded_stops_with_paths_and_keeps_files(smoke_run, tmp_path, capsys):
    train, test = _manifest_corpus(smoke_run, tmp_path)
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    for r in rows[:3]:
        r["audio"] = f"audio/gone-{r['id']}.flac"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = run_alp(SMOKE, "data.source={name: manifest, train: %s, test: %s}" % (train, test),
                   f"output_dir={tmp_path / 'run'}", "data.max_bad_clips=1")
    assert code == 2
    err = capsys.readouterr().err
    assert "gone-" in err and "max_bad_clips" in err
    assert (tmp_path / "run" / "config.yaml").is_file()
    listed = [json.loads(line) for line in
              (tmp_path / "run" / "skipped_clips.jsonl").read_text().splitlines()]
    assert len(listed) == 2 and {c["reason"] for c in listed} == {"missing"}  # all, with why


def test_bad_manifest_rows_are_skipped_within_max_bad_rows(smoke_run, tmp_path):
    train, test = _manifest_corpus(smoke_run, tmp_path)
    lines = train.read_text().splitlines()
    lines[2] = '{"id": "x", "audio": "a.flac"'
    train.write_text("\n".join(lines) + "\n")
    code = run_alp(SMOKE, "data.source={name: manifest, train: %s, test: %s}" % (train, test),
                   f"output_dir={tmp_path / 'run'}", "data.max_bad_rows=1", "train.max_steps=2",
                   "eval.baseline=false")
    assert code == 0
    listed = [json.loads(line) for line in
              (tmp_path / "run" / "skipped_clips.jsonl").read_text().splitlines()]
    assert [c["reason"] for c in listed] == ["row"] and ":3" in listed[0]["path"]


def test_malformed_manifest_line_names_file_and_line(smoke_run, tmp_path, capsys):
    train, test = _manifest_corpus(smoke_run, tmp_path)
    lines = train.read_text().splitlines()
    lines[2] = '{"id": "x", "audio": "a.flac"'
    train.write_text("\n".join(lines) + "\n")
    code = run_alp(SMOKE, "data.source={name: manifest, train: %s, test: %s}" % (train, test),
                   f"output_dir={tmp_path / 'run'}")
    assert code == 2
    err = capsys.readouterr().err
    assert f"{train}:3: " in err and "invalid JSON" in err


def test_bad_config_fails_before_any_work(tmp_path, capsys):
    code = run_alp(SMOKE, "train.epocs=1", f"output_dir={tmp_path / 'run'}")
    assert code == 2
    assert "train.epocs: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_alp_plugins_lists_every_builtin_kind(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = {(c["kind"], c["name"]) for c in data["components"]}
    assert {("audio_encoder", "transformer"), ("text_encoder", "bert"), ("objective", "infonce"),
            ("eval_task", "linear-probe"), ("eval_task", "retrieval"),
            ("data_source", "demo"), ("command", "run")} <= kinds
    assert data["failed"] == []


@pytest.mark.slow
def test_pretrained_minilm_text_tower_runs_offline(smoke_run, tmp_path):
    code = run_alp(SMOKE, "model.text_encoder={name: minilm, freeze: true}",
                   f"output_dir={tmp_path / 'run'}", f"data.cache_dir={smoke_run / 'cache'}",
                   "train.max_steps=2", "eval.baseline=false")
    assert code == 0
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["model"]["text_encoder"] == {"name": "minilm", "max_tokens": 32,
                                               "pooling": "mean", "freeze": True}
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["models"] == ["pretrained"] and "retrieval" in report["results"]["pretrained"]


WEIGHTED = "{name: weighted-sum, terms: [{name: siglip, weight: 0.5}, {name: captioning}]}"


@pytest.mark.parametrize("objective, logged, parts", [
    ("objective.name=infonce", "loss_a2t", {"text_encoder"}),
    ("objective.name=siglip", "logit_bias", {"text_encoder"}),
    ("objective.name=captioning", "token_acc_ar", {"caption_decoder"}),
    ("objective={name: captioning, parallel_probability: 1.0}", "token_acc_parallel",
     {"caption_decoder"}),
    ("objective.name=coca", "captioning/token_acc", {"text_encoder", "caption_decoder"}),
    (f"objective={WEIGHTED}", "siglip/logit_bias", {"text_encoder", "caption_decoder"}),
])
def test_each_objective_is_selected_by_name(smoke_run, tmp_path, objective, logged, parts):
    from safetensors import safe_open

    code = run_alp(SMOKE, objective, f"output_dir={tmp_path / 'run'}",
                   f"data.cache_dir={smoke_run / 'cache'}", "train.max_steps=3",
                   "train.log_every=1", "eval.baseline=false")
    assert code == 0
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["objective"]["name"] in objective
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    train = [json.loads(x) for x in lines if json.loads(x)["event"] == "train"]
    assert len(train) == 3 and all(logged in row for row in train)
    with safe_open(str(tmp_path / "run" / "checkpoint" / "model.safetensors"), "pt") as f:
        towers = {k.split(".")[1] for k in f.keys() if k.startswith("model.")}  # noqa: SIM118
    assert towers & {"text_encoder", "caption_decoder"} == parts
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert ("retrieval" in report["results"]["pretrained"]) == ("text_encoder" in parts)
    samples = report["meta"].get("caption_samples", [])
    assert bool(samples) == ("caption_decoder" in parts)
    assert all(set(s) == {"id", "reference", "generated"} for s in samples)
