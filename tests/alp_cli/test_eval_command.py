"""``alp eval`` on a real (2-step) run's checkpoint with an ESC-50-layout benchmark, the
embedding cache across invocations, and ``alp compare`` of the two reports."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from alp_cli.commands.eval import parse_tasks
from alp_core import CommandRecord, ConfigError, hookimpl
from alp_core.manager import get_plugin_manager, new_plugin_manager

SMOKE = str(Path(__file__).parents[2] / "configs" / "smoke.yaml")
RATE = 16000
PNG = b"\x89PNG\r\n\x1a\n"


def _commands_plugin() -> types.SimpleNamespace:
    @hookimpl
    def alp_cli_commands():
        return [CommandRecord("eval", "benchmarks", "alp_cli.commands.eval:add_arguments",
                              "alp_cli.commands.eval:run"),
                CommandRecord("compare", "reports", "alp_cli.commands.compare:add_arguments",
                              "alp_cli.commands.compare:run")]

    return types.SimpleNamespace(alp_cli_commands=alp_cli_commands)


@pytest.fixture(scope="module")
def alp():
    """``main`` with the eval and compare commands (registered here until alp-cli's plugin
    lists them)."""
    from alp_cli import main as main_module

    with pytest.MonkeyPatch.context() as patch:
        if "eval" not in get_plugin_manager().records("command"):
            pm = new_plugin_manager(plugins=[("test-eval-commands", _commands_plugin())])
            patch.setattr(main_module, "get_plugin_manager", lambda: pm)
        yield main_module.main


@pytest.fixture(scope="module")
def run_dir(alp, tmp_path_factory):
    out = tmp_path_factory.mktemp("evalrun")
    code = alp(["run", SMOKE, "train.max_steps=2", "eval.baseline=false",
                "eval.tasks=[{name: linear-probe}]", "data.source.num_clips=24",
                f"output_dir={out / 'run'}", f"data.cache_dir={out / 'cache'}"])
    assert code == 0
    return out / "run"


def _esc50(root: Path) -> Path:
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in range(1, 6):
        for target, (category, pitch) in enumerate((("rain", 300.0), ("dog", 2000.0))):
            for k in range(2):
                name = f"{fold}-{target}{k}-A-{target}.wav"
                rows.append(f"{name},{fold},{target},{category},False,1,A")
                rng = np.random.default_rng(fold * 10 + k)
                t = np.arange(RATE // 2) / RATE
                wave = 0.3 * np.sin(2 * np.pi * pitch * (1 + 0.03 * rng.standard_normal()) * t)
                (root / "audio").mkdir(parents=True, exist_ok=True)
                sf.write(str(root / "audio" / name), wave.astype("float32"), RATE)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def test_alp_eval_on_a_checkpoint_then_cached_then_compared(alp, run_dir, tmp_path, capsys):
    esc = _esc50(tmp_path / "ESC-50-master")
    out1 = tmp_path / "eval1"
    code = alp(["eval", str(run_dir), "--tasks",
                f"esc50:root={esc},linear_probe.weight_decays=[0.001,0.01],max_seconds=2",
                "--out", str(out1), "--batch-size", "8", "--workers", "2", "--baseline"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "## esc50 (sound, multiclass)" in printed and "eval_report.md" in printed
    report = json.loads((out1 / "eval_report.json").read_text())
    assert report["models"] == ["run", "random-init"]
    fingerprints = report["meta"]["fingerprints"]
    assert fingerprints["run"] != fingerprints["random-init"]
    result = report["results"]["run"]["esc50/linear-probe"]
    assert result["details"]["n_rounds"] == 5 and result["details"]["clips"]["embedded"] == 20
    assert result["metrics"]["accuracy"] > 0.7
    assert report["meta"]["tasks"][0]["linear_probe"]["weight_decays"] == [0.001, 0.01]
    assert report["meta"]["cache_stats"]["writes"] == 2  # one entry per encoder
    assert list((run_dir / "eval_cache" / "esc50").glob("*/meta.json"))  # default location
    assert "| accuracy (primary) |" in (out1 / "eval_report.md").read_text()

    config = tmp_path / "eval.yaml"  # the checkpoint folder itself, tasks from YAML
    config.write_text(yaml.safe_dump({
        "tasks": [{"name": "esc50", "root": str(esc), "max_seconds": 2,
                   "linear_probe": {"weight_decays": [0.1]}}],
        "cache": str(run_dir / "eval_cache"), "out": str(tmp_path / "eval2"),
        "label": "again"}))
    assert alp(["eval", str(run_dir / "checkpoint"), "--config", str(config)]) == 0
    second = json.loads((tmp_path / "eval2" / "eval_report.json").read_text())
    assert second["meta"]["fingerprints"]["again"] == report["meta"]["fingerprints"]["run"]
    assert second["meta"]["cache_stats"] == {"hits": 1, "misses": 0, "corrupt": 0,
                                             "writes": 0}
    assert second["results"]["again"]["esc50/linear-probe"]["details"]["extraction"][
        "from_cache"]

    capsys.readouterr()
    assert alp(["compare", str(out1), str(tmp_path / "eval2"), "--out",
                str(tmp_path / "cmp")]) == 0
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert ("| task | metric | eval1:run | eval1:random-init | Δ vs eval1:run | eval2 | "
            "Δ vs eval1:run |") in md
    assert "| esc50/linear-probe | accuracy |" in md
    assert (tmp_path / "cmp" / "compare_sound.png").read_bytes()[:8] == PNG
    assert "compare_sound.png" in capsys.readouterr().out


def test_alp_eval_errors_name_the_task_and_the_choices(alp, run_dir, capsys):
    assert alp(["eval", str(run_dir)]) == 2
    assert "no tasks; give --tasks NAME:root=FOLDER" in capsys.readouterr().err
    assert alp(["eval", str(run_dir), "--tasks", "esc5:root=/x"]) == 2
    err = capsys.readouterr().err
    assert "tasks.0.name: unknown eval task 'esc5'" in err and "esc50" in err
    assert alp(["eval", str(run_dir), "--tasks", "esc50:root=/nowhere"]) == 2
    assert "root folder /nowhere does not exist" in capsys.readouterr().err


def test_task_specs_parse_names_options_and_nested_values():
    assert parse_tasks(["esc50:root=/data/ESC-50-master,max_seconds=5,urbansound8k:root=s3://b/u",
                        "desed", "gtzan:rounds=[0,1],linear_probe.steps=50"]) == [
        {"name": "esc50", "root": "/data/ESC-50-master", "max_seconds": 5},
        {"name": "urbansound8k", "root": "s3://b/u"},
        {"name": "desed"},
        {"name": "gtzan", "rounds": [0, 1], "linear_probe": {"steps": 50}},
    ]
    with pytest.raises(ConfigError, match="comes before any task name"):
        parse_tasks(["root=/x"])
