"""Reports: JSON round trip, summary values, Markdown rows and columns."""

from __future__ import annotations

import json
import math

import pytest

from alp_eval.context import TaskResult
from alp_eval.report import build_report, render_markdown, report_results, write_report


def _results() -> dict[str, list[TaskResult]]:
    def retrieval(r1: float) -> TaskResult:
        metrics = {"a2t_R@1": r1, "t2a_R@1": r1 / 2, "mean_R": r1 * 0.75}
        return TaskResult("retrieval", metrics, "mean_R", {"n_clips": 12})

    return {
        "pretrained": [
            TaskResult(
                "probe/kind",
                {"accuracy": 0.9, "macro_f1": 0.85},
                "accuracy",
                {"n_train": 40, "chance": 0.34, "ratio": (1, 2)},
            ),
            TaskResult("probe/mood", {"accuracy": 0.7, "macro_f1": 0.6}, "accuracy", {}),
            retrieval(0.4),
        ],
        "random-init": [
            TaskResult("probe/kind", {"accuracy": 0.5, "macro_f1": 0.45}, "accuracy", {}),
            TaskResult("probe/mood", {"accuracy": 0.4, "macro_f1": math.nan}, "accuracy", {}),
            retrieval(0.1),
        ],
    }


def test_report_round_trips_through_json(tmp_path):
    report = build_report(_results(), {"run": "demo", "seed": 0, "steps": [1, 2]})
    assert json.loads(json.dumps(report)) == report
    json_path, md_path = write_report(report, tmp_path / "out")
    assert json.loads(json_path.read_text()) == report
    assert md_path.read_text() == render_markdown(report)
    assert report["results"]["random-init"]["probe/mood"]["metrics"]["macro_f1"] is None
    back = report_results(json.loads(json_path.read_text()))
    assert [r.task for r in back["pretrained"]] == ["probe/kind", "probe/mood", "retrieval"]
    assert back["pretrained"][0].details["ratio"] == [1, 2]


def test_summary_averages_primaries():
    summary = build_report(_results(), {})["summary"]
    assert summary["pretrained"]["probe_average"] == pytest.approx(0.8)
    assert summary["pretrained"]["n_probe_tasks"] == 2
    assert summary["pretrained"]["retrieval_mean"] == pytest.approx(0.3)
    assert summary["random-init"]["probe_average"] == pytest.approx(0.45)


def test_markdown_has_every_row_both_models_and_the_delta():
    text = render_markdown(build_report(_results(), {"run": "demo"}))
    header = next(line for line in text.splitlines() if line.startswith("| task"))
    assert "pretrained" in header and "random-init" in header
    assert "Δ (pretrained − random-init)" in header
    for task, metric in [
        ("probe/kind", "accuracy"),
        ("probe/kind", "macro_f1"),
        ("probe/mood", "macro_f1"),
        ("retrieval", "a2t_R@1"),
        ("retrieval", "mean_R"),
    ]:
        assert any(line.startswith(f"| {task} | {metric}") for line in text.splitlines())
    assert "| probe/kind | accuracy (primary) | 0.900 | 0.500 | +0.400 |" in text
    assert "| probe/mood | macro_f1 | 0.600 | — | — |" in text
    assert "**Probe average**: pretrained 0.800 (2 tasks) · random-init 0.450 (2 tasks)" in text
    assert "Δ +0.350" in text
    assert "- run: demo" in text


def test_the_summary_delta_is_over_the_tasks_both_models_scored():
    """random-init's probe/mood primary is NaN: its probe average is over probe/kind alone
    (0.5) and pretrained's over both (0.8); their difference (0.3) compares different task
    sets, so the Δ is probe/kind's alone, and says so."""
    results = _results()
    results["random-init"][1] = TaskResult("probe/mood", {"accuracy": math.nan}, "accuracy", {})
    text = render_markdown(build_report(results, {}))
    line = next(x for x in text.splitlines() if x.startswith("**Probe average**"))
    assert line == ("**Probe average**: pretrained 0.800 (2 tasks) · random-init 0.500 "
                    "(1 tasks) · Δ +0.400 over the 1 tasks both scored")
    retrieval = next(x for x in text.splitlines() if x.startswith("**Retrieval mean**"))
    assert retrieval.endswith("· Δ +0.225")  # both scored it: the plain difference


def test_single_model_has_no_delta_column():
    report = build_report({"only": _results()["pretrained"]}, {})
    assert "Δ" not in render_markdown(report)


def test_duplicate_task_is_an_error():
    dup = [TaskResult("probe/kind", {"accuracy": 1.0}, "accuracy")] * 2
    with pytest.raises(ValueError, match="probe/kind"):
        build_report({"m": dup}, {})


def test_a_retrieval_test_set_counts_in_the_retrieval_mean_not_the_probe_averages():
    """`audiocaps-retrieval` and the other retrieval test sets carry a domain but no probe:
    they were averaged with ESC-50's accuracy into the linear-probe domain and benchmark
    averages while the retrieval mean showed 0 tasks."""
    from alp_eval.report import render_benchmark_markdown

    esc = TaskResult("esc50/linear-probe", {"accuracy": 0.8}, "accuracy",
                     {"benchmark": "esc50", "domain": "sound", "probe": "linear-probe",
                      "task_type": "multiclass"})
    sets = [TaskResult(name, {"mean_R": r}, "mean_R",
                       {"benchmark": name, "domain": "sound", "task_type": "retrieval"})
            for name, r in (("audiocaps-retrieval", 0.2), ("clotho-retrieval", 0.1))]
    report = build_report({"m": [esc, *sets]}, {})
    summary = report["summary"]["m"]
    assert summary["retrieval_mean"] == pytest.approx(0.15)
    assert summary["n_retrieval_tasks"] == 2
    assert summary["benchmark_average"] == pytest.approx(0.8)
    assert summary["n_benchmark_tasks"] == 1
    assert summary["domains"] == {"linear": {"sound": {"mean": 0.8, "n_tasks": 1,
                                                       "tasks": ["esc50/linear-probe"]}}}
    assert "| sound | 0.800 (n=1) |" in render_benchmark_markdown(report)
