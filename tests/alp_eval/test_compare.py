"""``compare_reports``: eval and run reports side by side, differences, domain charts."""

from __future__ import annotations

import json
import sys

import pytest

from alp_core.errors import ConfigError
from alp_eval.compare import compare_reports, comparison_rows, load_columns
from alp_eval.context import TaskResult
from alp_eval.report import build_report, write_benchmark_report, write_report

PNG = b"\x89PNG\r\n\x1a\n"


def _bench(name, domain, value, std, probe="linear-probe", primary="accuracy"):
    return TaskResult(f"{name}/{probe}", {primary: value, f"{primary}_std": std}, primary,
                      {"benchmark": name, "domain": domain, "probe": probe})


def _eval_report(folder, label, shift, fingerprint):
    results = [_bench("esc50", "sound", 0.7 + shift, 0.05),
               _bench("esc50", "sound", 0.75 + shift, 0.04, probe="attention-probe"),
               _bench("fsd50k", "sound", 0.4 + shift, 0.0, primary="mAP"),
               _bench("gtzan", "music", 0.6 + shift, 0.1)]
    report = build_report({label: results}, {"fingerprint": fingerprint})
    write_benchmark_report(report, folder)
    return folder


def test_two_eval_reports_side_by_side_with_differences_and_charts(tmp_path):
    a = _eval_report(tmp_path / "a", "base", 0.0, "f00d")
    b = _eval_report(tmp_path / "b", "new", 0.1, "beef")
    written = compare_reports([str(a), f"better={b / 'eval_report.json'}"], tmp_path / "out")
    md = (tmp_path / "out" / "compare.md").read_text()
    assert md == written["text"]
    assert "| task | metric | a | better | Δ vs a |" in md
    assert "| esc50/linear-probe | accuracy | 0.700 ± 0.050 | 0.800 ± 0.050 | +0.100 |" in md
    assert "| domain: music | linear probe average | 0.600 | 0.700 | +0.100 |" in md
    assert "| domain: sound | attention probe average | 0.750 | 0.850 | +0.100 |" in md
    assert "| benchmark average | mean of primaries | " in md and "(encoder beef)" in md
    names = sorted(p.name for p in written["charts"])
    assert names == ["compare_music.png", "compare_sound-attention.png", "compare_sound.png"]
    for path in written["charts"]:
        assert path.read_bytes()[:8] == PNG
    data = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert [c["name"] for c in data["columns"]] == ["a", "better"]
    assert data["rows"][0]["values"] == pytest.approx([0.7, 0.8])


def test_a_run_report_with_two_models_gives_two_columns(tmp_path):
    run = tmp_path / "run-1"
    write_report(build_report({
        "pretrained": [TaskResult("probe/kind", {"accuracy": 0.9}, "accuracy")],
        "random-init": [TaskResult("probe/kind", {"accuracy": 0.5}, "accuracy")],
    }, {}), run)
    columns = load_columns([str(run), str(_eval_report(tmp_path / "e", "x", 0.0, "f"))])
    assert [c.name for c in columns] == ["run-1:pretrained", "run-1:random-init", "e"]
    rows = {(r.task, r.metric): r for r in comparison_rows(columns)}
    assert rows[("probe/kind", "accuracy")].values == [0.9, 0.5, None]
    assert rows[("probe/kind", "accuracy")].domain == "other"
    assert rows[("probe average", "mean of primaries")].values == [0.9, 0.5, None]


def test_without_matplotlib_the_charts_are_skipped_with_a_note(tmp_path, monkeypatch):
    a = _eval_report(tmp_path / "a", "a", 0.0, "1")
    b = _eval_report(tmp_path / "b", "b", 0.1, "2")
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    written = compare_reports([str(a), str(b)], tmp_path / "out")
    assert written["charts"] == [] and not list((tmp_path / "out").glob("*.png"))
    assert "charts skipped: matplotlib is not installed" in written["text"]


def test_bad_sources_name_the_problem(tmp_path):
    a = _eval_report(tmp_path / "a", "a", 0.0, "1")
    with pytest.raises(ConfigError, match="at least two reports"):
        compare_reports([str(a)], tmp_path / "out")
    with pytest.raises(ConfigError, match=r"two columns are named \['a'\]"):
        load_columns([str(a), str(a)])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither eval_report.json"):
        load_columns([str(tmp_path / "empty")])
    (tmp_path / "other.json").write_text('{"schema": "something-else"}')
    with pytest.raises(ConfigError, match="not an ALP evaluation report"):
        load_columns([str(tmp_path / "other.json")])


def test_averages_over_different_tasks_show_no_difference_and_say_why(tmp_path):
    # b lacks urbansound8k: its sound average covers esc50 alone, a's both; the shared task
    # rose by 0.2 while the averages were equal, and the Δ column said +0.000
    def report(folder, results):
        write_benchmark_report(build_report({"m": results}, {}), folder)
        return str(folder)

    a = report(tmp_path / "a", [_bench("esc50", "sound", 0.5, 0.0),
                                _bench("urbansound8k", "sound", 0.9, 0.0),
                                _bench("gtzan", "music", 0.6, 0.0)])
    b = report(tmp_path / "b", [_bench("esc50", "sound", 0.7, 0.0),
                                _bench("gtzan", "music", 0.65, 0.0)])
    written = compare_reports([a, b], tmp_path / "out", charts=False)
    md = written["text"]
    assert "| esc50/linear-probe | accuracy | 0.500 ± 0.000 | 0.700 ± 0.000 | +0.200 |" in md
    assert "| domain: sound | linear probe average * | 0.700 | 0.700 | — |" in md
    assert "| domain: music | linear probe average | 0.600 | 0.650 | +0.050 |" in md
    assert "| benchmark average | mean of primaries * |" in md
    assert any("b has no result for urbansound8k/linear-probe" in n for n in written["notes"])
    rows = json.loads((tmp_path / "out" / "compare.json").read_text())["rows"]
    assert {r["task"]: r["comparable"] for r in rows}["domain: music"] is True
