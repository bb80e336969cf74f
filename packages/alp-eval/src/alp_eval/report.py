"""Evaluation reports: a JSON-able dict of every model's task results, and a Markdown table
comparing the models (rows = task/metric, one column per model, the first-minus-second delta).

Benchmark results (``alp eval``, :mod:`alp_eval.protocol`) carry ``domain`` and ``probe`` in
their details; the summary then also holds per-domain averages of their primary metrics
(``domains``: probe group → domain → mean and task count; the ``linear`` group is the linear
probe and the frame-level SED probe, ``attention`` the attention probe) and their overall
``benchmark_average`` (linear group). :func:`render_benchmark_markdown` writes such a report as
one table per benchmark (metric mean ± std over the protocol rounds, one column per probe)
followed by the domain averages."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alp_eval.context import TaskResult

__all__ = [
    "SCHEMA", "build_report", "domain_group", "render_benchmark_markdown", "render_markdown",
    "report_results", "write_benchmark_report", "write_report",
]

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


def domain_group(details: Mapping[str, Any]) -> str:
    """The group a benchmark result averages in: ``attention`` or ``linear`` (probes), or
    ``retrieval`` (a retrieval test set: it counts in the retrieval mean, not in the probes'
    domain and benchmark averages)."""
    if details.get("task_type") == "retrieval":
        return "retrieval"
    return "attention" if details.get("probe") == "attention-probe" else "linear"


def _domains(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """probe group -> domain -> {mean, n_tasks, tasks} of the benchmark results' primaries."""
    values: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for name, task in tasks.items():
        details = task.get("details", {})
        value = task["metrics"].get(task["primary"])
        if "domain" not in details or value is None or domain_group(details) == "retrieval":
            continue
        group = values.setdefault(domain_group(details), {})
        group.setdefault(details["domain"], []).append((name, value))
    return {group: {domain: {"mean": _mean([v for _, v in items]), "n_tasks": len(items),
                             "tasks": [n for n, _ in items]}
                    for domain, items in sorted(domains.items())}
            for group, domains in sorted(values.items())}


def _groups(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """The scored primaries by summary group (probe, retrieval, benchmark): task -> value.
    A task whose primary is missing or was not finite (None in the JSON) is in no group."""
    groups: dict[str, dict[str, float]] = {"probe": {}, "retrieval": {}, "benchmark": {}}
    for name, task in tasks.items():
        value = task["metrics"].get(task["primary"])
        if value is None:
            continue
        details = task.get("details", {})
        if name.startswith(PROBE_PREFIX):
            groups["probe"][name] = value
        elif name.startswith(RETRIEVAL_PREFIX) or domain_group(details) == "retrieval":
            groups["retrieval"][name] = value
        elif "domain" in details and domain_group(details) == "linear":
            groups["benchmark"][name] = value
    return groups


def _summary(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Probe average (mean of probe primaries) and retrieval mean (mean of retrieval primaries);
    for benchmark results also the domain averages and the benchmark average."""
    groups = {group: list(values.values()) for group, values in _groups(tasks).items()}
    out: dict[str, Any] = {
        "probe_average": _mean(groups["probe"]),
        "n_probe_tasks": len(groups["probe"]),
        "retrieval_mean": _mean(groups["retrieval"]),
        "n_retrieval_tasks": len(groups["retrieval"]),
    }
    domains = _domains(tasks)
    if domains:
        out["domains"] = domains
        out["benchmark_average"] = _mean(groups["benchmark"])
        out["n_benchmark_tasks"] = len(groups["benchmark"])
    return out


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


def _summary_delta(report: Mapping[str, Any], a: str, b: str, key: str) -> str:
    """Δ of two models' averages; where one scored a task the other did not (a NaN primary),
    the Δ is over the tasks both scored, and says so: averages over different task sets
    do not compare."""
    group = "probe" if key == "probe_average" else "retrieval"
    mine = _groups(report["results"][a])[group]
    theirs = _groups(report["results"][b])[group]
    if mine.keys() == theirs.keys():
        return f"Δ {_delta(report['summary'][a][key], report['summary'][b][key])}"
    both = [name for name in mine if name in theirs]
    delta = _delta(_mean([mine[n] for n in both]), _mean([theirs[n] for n in both]))
    return f"Δ {delta} over the {len(both)} tasks both scored"


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
            parts.append(_summary_delta(report, models[0], models[1], key))
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


# -- benchmark reports (alp eval) -----------------------------------------------------------

BENCHMARK_JSON = "eval_report.json"
BENCHMARK_MD = "eval_report.md"
_BOOKKEEPING = frozenset({"weight_decay", "lr", "epoch", "n_classes", "median_window_frames",
                          "n_classes_without_positives", "n_train_frames"})


def _pm(metrics: Mapping[str, Any], metric: str) -> str:
    """``mean ± std`` (3 decimals), or the mean alone without a std."""
    value, std = metrics.get(metric), metrics.get(f"{metric}_std")
    if value is None:
        return "—"
    return f"{value:.3f} ± {std:.3f}" if std is not None else f"{value:.3f}"


def _benchmarks(tasks: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """benchmark -> its result names (probe kinds), in report order."""
    out: dict[str, list[str]] = {}
    for name, task in tasks.items():
        details = task.get("details", {})
        if "benchmark" in details:
            out.setdefault(details["benchmark"], []).append(name)
    return out


def _benchmark_table(tasks: Mapping[str, Mapping[str, Any]], names: list[str]) -> list[str]:
    first = tasks[names[0]]
    details = first["details"]
    clips = details.get("clips", {})
    extraction = details.get("extraction", {})
    cached = " (read from the cache)" if extraction.get("from_cache") else ""
    probes = [tasks[n]["details"].get("probe", n) for n in names]
    lines = [
        f"## {details['benchmark']} ({details.get('domain')}, {details.get('task_type')})", ""]
    if details.get("task_type") == "retrieval":  # a retrieval set: no protocol, no probe
        lines += [
            f"- clips: {clips.get('listed')} listed, {clips.get('failed_to_decode')} failed "
            f"to decode, {clips.get('embedded')} embedded; {details.get('captions')} "
            f"captions; {details.get('seconds')} s"]
    else:
        lines += [
            f"- protocol: {details.get('protocol')}; rounds run: {details.get('n_rounds')}",
            f"- clips: {clips.get('listed')} listed, {clips.get('skipped_by_loader')} skipped "
            f"by the loader (missing audio), {clips.get('failed_to_decode')} failed to "
            f"decode, {clips.get('embedded')} embedded (first {details.get('max_seconds')} s "
            "of each)",
            f"- extraction: {extraction.get('clips_per_s')} clips/s, "
            f"{extraction.get('audio_s_per_s')} audio s/s{cached}; probe fit: "
            + ", ".join(f"{p} {tasks[n]['details'].get('fit_seconds')} s"
                        for p, n in zip(probes, names))]
    lines += [
        "",
        "| metric | " + " | ".join(_cell(p) for p in probes) + " |",
        "| --- |" + " ---: |" * len(names),
    ]
    metrics: list[str] = []
    for name in names:
        task = tasks[name]
        for metric in [task["primary"], *task["metrics"]]:
            if (metric not in metrics and not metric.endswith("_std")
                    and metric not in _BOOKKEEPING):
                metrics.append(metric)
    for metric in metrics:
        primary = any(tasks[n]["primary"] == metric for n in names)
        label = f"{metric} (primary)" if primary else metric
        lines.append(f"| {_cell(label)} | "
                     + " | ".join(_pm(tasks[n]["metrics"], metric) for n in names) + " |")
    failed = details.get("failed") or []
    if failed:
        shown = "; ".join(f"{_cell(f['path'])} ({f.get('reason') or f.get('error', '?')})"
                          for f in failed)
        lines += ["", f"Failed clips: {shown}"]
    return [*lines, ""]


def render_benchmark_markdown(report: Mapping[str, Any]) -> str:
    """The ``alp eval`` report: per model, one table per benchmark (mean ± std over the
    protocol rounds, a column per probe), then the per-domain averages of the primaries."""
    lines = ["# ALP benchmark evaluation", ""]
    for key, value in report.get("meta", {}).items():
        if key == "tasks":  # the full configs are in the JSON; here only what ran on what
            value = ", ".join(f"{t.get('name')} ({t.get('root')})" for t in value)
        shown = value if isinstance(value, str) else json.dumps(value)
        lines.append(f"- {key}: {shown}")
    lines.append("")
    for model in report["models"]:
        tasks = report["results"][model]
        if len(report["models"]) > 1:
            lines += [f"# {model}", ""]
        for names in _benchmarks(tasks).values():
            lines += _benchmark_table(tasks, names)
        summary = report["summary"][model]
        if summary.get("n_retrieval_tasks"):
            lines += [f"**Retrieval mean** (the retrieval sets' primary metrics): "
                      f"{_fmt(summary.get('retrieval_mean'))} "
                      f"(n={summary.get('n_retrieval_tasks')})", ""]
        domains = summary.get("domains", {})
        if not domains:
            continue
        groups = sorted(domains, key=lambda g: (g != "linear", g))
        lines += ["## Domain averages (primary metrics)", "",
                  "| domain | " + " | ".join(f"{g} probe" for g in groups) + " |",
                  "| --- |" + " ---: |" * len(groups)]
        for domain in sorted({d for g in groups for d in domains[g]}):
            cells = []
            for group in groups:
                entry = domains[group].get(domain)
                cells.append("—" if entry is None else
                             f"{_fmt(entry['mean'])} (n={entry['n_tasks']})")
            lines.append(f"| {domain} | " + " | ".join(cells) + " |")
        lines += ["", f"**Benchmark average** (linear probe, every domain): "
                  f"{_fmt(summary.get('benchmark_average'))} "
                  f"(n={summary.get('n_benchmark_tasks', 0)})", ""]
    return "\n".join(lines)


def write_benchmark_report(report: Mapping[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``eval_report.json`` and ``eval_report.md`` into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / BENCHMARK_JSON, out / BENCHMARK_MD
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    md_path.write_text(render_benchmark_markdown(report), encoding="utf-8")
    return json_path, md_path
