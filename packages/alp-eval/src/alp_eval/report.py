"""Evaluation reports: a JSON-able dict of every model's task results, and a Markdown table
comparing the models (rows = task/metric, one column per model, the first-minus-second delta)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alp_eval.context import TaskResult

__all__ = ["SCHEMA", "build_report", "render_markdown", "report_results", "write_report"]

SCHEMA = "alp-eval-report/1"
PROBE_PREFIX = "probe/"
RETRIEVAL_PREFIX = "retrieval"


def _jsonable(value: Any) -> Any:
    """Plain JSON types: tensors/numpy scalars become numbers, tuples lists, NaN/inf None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Probe average (mean of probe primaries) and retrieval mean (mean of retrieval primaries)."""
    groups: dict[str, list[float]] = {"probe": [], "retrieval": []}
    for name, task in tasks.items():
        value = task["metrics"].get(task["primary"])
        if value is None:
            continue
        if name.startswith(PROBE_PREFIX):
            groups["probe"].append(value)
        elif name.startswith(RETRIEVAL_PREFIX):
            groups["retrieval"].append(value)
    return {
        "probe_average": _mean(groups["probe"]),
        "n_probe_tasks": len(groups["probe"]),
        "retrieval_mean": _mean(groups["retrieval"]),
        "n_retrieval_tasks": len(groups["retrieval"]),
    }


def build_report(results: Mapping[str, Sequence[TaskResult]], meta: Mapping[str, Any]) -> dict:
    """The JSON-able report of every model (in the given order) and its per-model summary."""
    models = list(results)
    per_model: dict[str, dict[str, Any]] = {}
    for model in models:
        tasks: dict[str, Any] = {}
        for result in results[model]:
            if result.task in tasks:
                raise ValueError(f"model {model!r} has two results for task {result.task!r}")
            tasks[result.task] = {
                "primary": result.primary,
                "metrics": _jsonable(result.metrics),
                "details": _jsonable(result.details),
            }
        per_model[model] = tasks
    return {
        "schema": SCHEMA,
        "meta": _jsonable(dict(meta)),
        "models": models,
        "results": per_model,
        "summary": {model: _summary(per_model[model]) for model in models},
    }


def report_results(report: Mapping[str, Any]) -> dict[str, list[TaskResult]]:
    """The task results of a (possibly reloaded) report, keyed by model, as built."""
    return {
        model: [
            TaskResult(name, dict(task["metrics"]), task["primary"], dict(task["details"]))
            for name, task in report["results"][model].items()
        ]
        for model in report["models"]
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _delta(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None else f"{a - b:+.3f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(task, metric) rows: tasks in first-seen order, the primary metric first."""
    rows: list[tuple[str, str]] = []
    for model in report["models"]:
        for name, task in report["results"][model].items():
            for metric in [task["primary"], *task["metrics"]]:
                if (name, metric) not in rows:
                    rows.append((name, metric))
    return rows


def _prompt_lines(report: Mapping[str, Any]) -> list[str]:
    """One line per task whose details name its prompt ``templates`` (zero-shot): the
    templates and the class names they were filled with, as the first model that has it ran."""
    lines: list[str] = []
    seen: set[str] = set()
    for model in report["models"]:
        for name, task in report["results"][model].items():
            details = task.get("details", {})
            if name in seen or not details.get("templates"):
                continue
            seen.add(name)
            templates = " · ".join(f"`{_cell(t)}`" for t in details["templates"])
            names = details.get("class_names", {})
            classes = ", ".join(
                _cell(raw if readable == raw else f"{raw} → {readable}")
                for raw, readable in names.items()
            )
            lines.append(f"- {_cell(name)}: templates {templates}; classes: {classes}")
    return lines


def render_markdown(report: Mapping[str, Any]) -> str:
    """A Markdown table of every task metric per model (3 decimals) and the summary lines."""
    models: list[str] = list(report["models"])
    compare = len(models) >= 2
    header = ["task", "metric", *models]
    if compare:
        header.append(f"Δ ({models[0]} − {models[1]})")
    lines = ["# ALP evaluation report", ""]
    for key, value in report.get("meta", {}).items():
        shown = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"- {key}: {shown}")
    if report.get("meta"):
        lines.append("")
    lines.append("| " + " | ".join(_cell(h) for h in header) + " |")
    lines.append("| --- | --- |" + " ---: |" * (len(header) - 2))
    for name, metric in _rows(report):
        values = [report["results"][m].get(name, {}).get("metrics", {}).get(metric) for m in models]
        primary = any(report["results"][m].get(name, {}).get("primary") == metric for m in models)
        cells = [_cell(name), _cell(f"{metric} (primary)" if primary else metric)]
        cells += [_fmt(v) for v in values]
        if compare:
            cells.append(_delta(values[0], values[1]))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    summary = report["summary"]
    for label, key, count in (
        ("Probe average", "probe_average", "n_probe_tasks"),
        ("Retrieval mean", "retrieval_mean", "n_retrieval_tasks"),
    ):
        parts = [f"{m} {_fmt(summary[m][key])} ({summary[m][count]} tasks)" for m in models]
        if compare:
            parts.append(f"Δ {_delta(summary[models[0]][key], summary[models[1]][key])}")
        lines.append(f"**{label}**: " + " · ".join(parts))
        lines.append("")
    prompts = _prompt_lines(report)
    if prompts:
        lines += ["## Zero-shot prompts", "", *prompts, ""]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``out_dir`` (created if missing)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path
