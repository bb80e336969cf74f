"""``alp plugins``: every registered component, who provides it, and plugins that failed."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def collect() -> dict:
    from alp_core.manager import get_plugin_manager

    pm = get_plugin_manager()
    rows = [{"kind": r.kind, "name": r.name, "distribution": r.distribution,
             "version": r.version, "plugin": r.plugin,
             "description": getattr(r, "description", "") or getattr(r, "help", "")}
            for r in pm.all_records()]
    failed = [{"plugin": f.plugin, "distribution": f.distribution, "version": f.version,
               "error": f.error} for f in pm.failures]
    return {"components": rows, "failed": failed}


def run(args: argparse.Namespace) -> int:
    data = collect()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    header = ("KIND", "NAME", "DISTRIBUTION", "VERSION", "DESCRIPTION")
    rows = [(r["kind"], r["name"], r["distribution"], r["version"], r["description"])
            for r in data["components"]]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())
    if data["failed"]:
        print("\nplugins that failed to load:")
        for f in data["failed"]:
            print(f"  {f['plugin']} ({f['distribution'] or '?'} {f['version']}): {f['error']}")
    return 0
