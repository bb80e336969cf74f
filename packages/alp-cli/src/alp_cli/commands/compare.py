"""``alp compare A B ... --out DIR``: evaluation reports side by side, with domain charts.

Each argument is an ``eval_report.json`` (``alp eval``), a run's ``report.json``, a folder
holding either, or ``LABEL=PATH``. Writes ``compare.md`` (a column per model and its
difference to the first), ``compare.json`` and ``compare_<domain>.png`` (matplotlib).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", metavar="RUN_OR_REPORT",
                        help="reports or folders holding one; LABEL=PATH names a column")
    parser.add_argument("--out", required=True, help="folder for compare.md, .json and charts")
    parser.add_argument("--no-charts", action="store_true", help="write no PNG charts")


def run(args: argparse.Namespace) -> int:
    from alp_eval.compare import compare_reports

    written = compare_reports(args.reports, args.out, charts=not args.no_charts)
    print(written["text"])
    print(f"wrote {written['markdown']}, {written['json']}"
          + "".join(f", {path}" for path in written["charts"]))
    return 0
