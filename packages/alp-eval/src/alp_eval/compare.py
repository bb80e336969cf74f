"""Compare evaluation reports side by side: one Markdown table and a bar chart per domain.

A source is an ``eval_report.json`` (``alp eval``), a run's ``report.json`` (``alp run``), or a
folder holding either (``eval_report.json`` first); ``LABEL=PATH`` names its column. Every
model of a report is a column (``label`` alone for a one-model report, else
``label:model``). Rows are each task's primary metric (mean ± std when the report has a std),
then the domain averages, the benchmark average, the probe average and the retrieval mean;
after every column but the first comes its difference to the first. An average whose columns
cover different tasks (a task one report lacks) is marked ``*`` and shows no difference, with
a note naming the missing tasks. Charts (matplotlib,
optional) show the primary metric of each task of a domain, one bar per column, std as error
bars (attention-probe results apart, as ``<domain>-attention``); tasks without a domain
(run-split tasks) are charted as ``other``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alp_core.errors import ConfigError
from alp_eval.report import BENCHMARK_JSON, SCHEMA, domain_group

__all__ = ["Column", "Row", "compare_reports", "comparison_rows", "load_columns",
           "plot_domains", "render_comparison", "uneven_tasks"]

RUN_REPORT = "report.json"
COMPARE_MD = "compare.md"
COMPARE_JSON = "compare.json"
OTHER = "other"


@dataclass
class Column:
    """One model of one report: its results and summary."""

    name: str
    source: str
    results: Mapping[str, Mapping[str, Any]]
    summary: Mapping[str, Any]
    fingerprint: str | None = None


@dataclass
class Row:
    """One compared value: its label, metric, one value (and std) per column, its domain."""

    task: str
    metric: str
    values: list[float | None]
    stds: list[float | None] = field(default_factory=list)
    domain: str | None = None
    #: False for an average whose columns cover different tasks: no difference is shown
    comparable: bool = True


def _report_path(path: Path) -> Path:
    if path.is_dir():
        for name in (BENCHMARK_JSON, RUN_REPORT):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"{path}: neither {BENCHMARK_JSON} (alp eval) nor {RUN_REPORT} "
                          "(alp run) is there; give a report file or a folder holding one")
    if not path.is_file():
        raise ConfigError(f"{path}: no such report file or folder")
    return path


def _default_label(path: Path) -> str:
    folder = path.parent
    return folder.name or path.stem


def load_columns(sources: Sequence[str]) -> list[Column]:
    """The columns of every source (``PATH`` or ``LABEL=PATH``), in order."""
    columns: list[Column] = []
    for source in sources:
        label, sep, rest = source.partition("=")
        if not sep or os.path.exists(source):
            label, rest = "", source
        path = _report_path(Path(rest))
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a readable JSON report ({err})") from None
        if not isinstance(report, dict) or report.get("schema") != SCHEMA:
            raise ConfigError(f"{path}: not an ALP evaluation report (schema "
                              f"{report.get('schema') if isinstance(report, dict) else None!r}"
                              f", expected {SCHEMA!r})")
        label = label or _default_label(path)
        models = list(report["models"])
        for model in models:
            name = label if len(models) == 1 else f"{label}:{model}"
            meta = report.get("meta", {})
            fingerprint = (meta.get("fingerprints") or {}).get(model, meta.get("fingerprint"))
            columns.append(Column(name, str(path), report["results"][model],
                                  report.get("summary", {}).get(model, {}), fingerprint))
    names = [c.name for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"two columns are named {repeated}; name them LABEL=PATH")
    return columns


def _num(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else (
        float(value))


def comparison_rows(columns: Sequence[Column]) -> list[Row]:
    """Primary metric of every task, then the summary rows (module docstring)."""
    tasks: dict[str, tuple[str, str | None]] = {}
    for column in columns:
        for name, task in column.results.items():
            if name not in tasks:
                details = task.get("details", {})
                domain = details.get("domain")
                if domain is not None and domain_group(details) != "linear":
                    domain = f"{domain}-{domain_group(details)}"
                tasks[name] = (task["primary"], domain)
    rows = []
    for name, (metric, domain) in tasks.items():
        values, stds = [], []
        for column in columns:
            metrics = column.results.get(name, {}).get("metrics", {})
            values.append(_num(metrics.get(metric)))
            stds.append(_num(metrics.get(f"{metric}_std")))
        rows.append(Row(name, metric, values, stds, domain or OTHER))
    # a task some column lacks makes the averages over it cover different tasks per column
    uneven = {r.domain for r in rows if any(v is None for v in r.values)}
    groups = sorted({(g, d) for c in columns for g, ds in c.summary.get("domains", {}).items()
                     for d in ds}, key=lambda gd: (gd[0] != "linear", gd))
    for group, domain in groups:
        values = [_num(c.summary.get("domains", {}).get(group, {}).get(domain, {}).get("mean"))
                  for c in columns]
        scope = domain if group == "linear" else f"{domain}-{group}"
        rows.append(Row(f"domain: {domain}", f"{group} probe average", values,
                        comparable=scope not in uneven))
    for key, label in (("benchmark_average", "benchmark average"),
                       ("probe_average", "probe average"),
                       ("retrieval_mean", "retrieval mean")):
        values = [_num(c.summary.get(key)) for c in columns]
        if any(v is not None for v in values):
            rows.append(Row(label, "mean of primaries", values, comparable=not uneven))
    return rows


def uneven_tasks(columns: Sequence[Column], rows: Sequence[Row]) -> list[str]:
    """One note per column that lacks tasks another column has (its averages differ in
    scope: the comparison shows no difference for them)."""
    notes = []
    for k, column in enumerate(columns):
        lacking = [r.task for r in rows if r.comparable and r.domain is not None
                   and r.values[k] is None and any(v is not None for v in r.values)]
        if lacking:
            notes.append(f"{column.name} has no result for {', '.join(lacking)}: averages "
                         "over those tasks cover different tasks per column (marked *, no "
                         "difference shown)")
    return notes


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _value(value: float | None, std: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f} ± {std:.3f}" if std is not None else f"{value:.3f}"


def render_comparison(columns: Sequence[Column], rows: Sequence[Row],
                      notes: Sequence[str] = ()) -> str:
    """The Markdown comparison: a column per model, then its difference to the first."""
    first = columns[0].name
    header = ["task", "metric", first]
    for column in columns[1:]:
        header += [column.name, f"Δ vs {first}"]
    lines = ["# ALP comparison", ""]
    for column in columns:
        fingerprint = f" (encoder {column.fingerprint})" if column.fingerprint else ""
        lines.append(f"- {_cell(column.name)}: {column.source}{fingerprint}")
    lines += ["", "| " + " | ".join(_cell(h) for h in header) + " |",
              "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for row in rows:
        stds = row.stds or [None] * len(row.values)
        metric = row.metric if row.comparable else f"{row.metric} *"
        cells = [_cell(row.task), _cell(metric), _value(row.values[0], stds[0])]
        for value, std in zip(row.values[1:], stds[1:]):
            delta = ("—" if value is None or row.values[0] is None or not row.comparable
                     else f"{value - row.values[0]:+.3f}")
            cells += [_value(value, std), delta]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if notes:
        lines += [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def plot_domains(columns: Sequence[Column], rows: Sequence[Row], out_dir: Path) -> list[Path]:
    """One grouped bar chart per domain, ``compare_<domain>.png`` (needs matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    by_domain: dict[str, list[Row]] = {}
    for row in rows:
        if row.domain is not None:
            by_domain.setdefault(row.domain, []).append(row)
    paths = []
    width = 0.8 / max(1, len(columns))
    for domain, items in by_domain.items():
        fig = Figure(figsize=(max(4.0, 1.2 * len(items) * max(1, len(columns)) ** 0.5 + 2), 3.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for k, column in enumerate(columns):
            xs = [i + (k - (len(columns) - 1) / 2) * width for i in range(len(items))]
            heights = [row.values[k] or 0.0 for row in items]
            errors = [(row.stds[k] or 0.0) if row.stds else 0.0 for row in items]
            ax.bar(xs, heights, width, yerr=errors, capsize=3, label=column.name)
        ax.set_xticks(range(len(items)))
        ax.set_xticklabels([f"{row.task}\n{row.metric}" for row in items], fontsize=8)
        ax.set_ylabel("primary metric")
        ax.set_title(f"{domain}: primary metric per task")
        ax.legend(fontsize=8)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in domain)
        path = out_dir / f"compare_{safe}.png"
        fig.savefig(path, dpi=100)
        paths.append(path)
    return paths


def compare_reports(sources: Sequence[str], out_dir: str | os.PathLike,
                    charts: bool = True) -> dict[str, Any]:
    """Write ``compare.md``, ``compare.json`` and the domain charts into ``out_dir``."""
    if len(sources) < 2:
        raise ConfigError(f"give at least two reports to compare, got {len(sources)}")
    columns = load_columns(sources)
    rows = comparison_rows(columns)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = uneven_tasks(columns, rows)
    images: list[Path] = []
    if charts:
        try:
            images = plot_domains(columns, rows, out)
        except ImportError:
            notes.append("charts skipped: matplotlib is not installed (pip install matplotlib)")
    markdown = render_comparison(columns, rows, notes)
    (out / COMPARE_MD).write_text(markdown, encoding="utf-8")
    data = {"columns": [{"name": c.name, "source": c.source, "fingerprint": c.fingerprint}
                        for c in columns],
            "rows": [{"task": r.task, "metric": r.metric, "domain": r.domain,
                      "values": r.values, "stds": r.stds, "comparable": r.comparable}
                     for r in rows],
            "charts": [str(p) for p in images], "notes": notes}
    (out / COMPARE_JSON).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return {"markdown": out / COMPARE_MD, "json": out / COMPARE_JSON, "charts": images,
            "notes": notes, "text": markdown}
