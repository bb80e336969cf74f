"""``alp eval CHECKPOINT_OR_RUN --tasks ...``: the frozen encoder on the standard benchmarks.

Tasks are registered benchmark eval tasks (``alp plugins``: esc50, urbansound8k, ...,
desed), given as ``--tasks NAME:key=value,key=value,NAME2:key=value`` (values are YAML,
nested keys dotted: ``esc50:root=/data/ESC-50-master,linear_probe.steps=100``) or as the
``tasks`` list of ``--config eval.yaml``::

    tasks:
      - {name: esc50, root: /data/ESC-50-master}
      - {name: desed, root: /data/DESED, max_seconds: 10}
    batch_size: 32

Writes ``eval_report.json`` and ``eval_report.md`` into ``--out`` (default: the checkpoint or
run folder); embeddings are cached under ``--cache`` (default ``<folder>/eval_cache``).
``--baseline`` adds the same architecture with random weights as a second report column.
"""

from __future__ import annotations

import argparse
from typing import Any

CONFIG_KEYS = ("tasks", "out", "cache", "batch_size", "device", "workers", "threads", "label",
               "baseline")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="CHECKPOINT_OR_RUN",
                        help="a run folder, a checkpoint folder, a save_pretrained folder or "
                        "a model.safetensors file in one of those")
    parser.add_argument("--tasks", action="append", default=[], metavar="SPEC",
                        help="NAME:key=value,... (repeatable; several tasks per value, "
                        "each starting with NAME:), e.g. esc50:root=/data/ESC-50-master")
    parser.add_argument("--config", default=None, metavar="EVAL.yaml",
                        help=f"YAML with any of: {', '.join(CONFIG_KEYS)} (flags win)")
    parser.add_argument("--out", default=None, help="report folder (default: the model's)")
    parser.add_argument("--cache", default=None, metavar="URL",
                        help="embedding cache location, any fsspec URL (default: "
                        "<model folder>/eval_cache)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write a cache")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per forward (16)")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (4)")
    parser.add_argument("--device", default=None, help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads on the CPU (default: torch's); 1 is often "
                        "fastest on a busy machine")
    parser.add_argument("--label", default=None,
                        help="the model's name in the report (default: from the path)")
    parser.add_argument("--baseline", action="store_true",
                        help="also evaluate the same architecture with random weights (the "
                        "checkpoint's seed), as a second report column 'random-init'")


def _split(text: str) -> list[str]:
    """Split at commas outside brackets and quotes (``rounds=[0,1]`` stays whole)."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_tasks(texts: list[str]) -> list[dict[str, Any]]:
    """Task specs ``{name, **options}`` from ``--tasks`` values (module docstring)."""
    from alp_cli.overrides import apply_overrides
    from alp_core import ConfigError

    specs: list[dict[str, Any]] = []
    for text in texts:
        for part in _split(text):
            head = part.partition("=")[0]
            if ":" in head:
                name, _, option = part.partition(":")
                specs.append({"name": name.strip()})
            elif "=" not in part:
                specs.append({"name": part})
                continue
            else:
                option = part
                if not specs:
                    raise ConfigError(f"--tasks {text!r}: option {part!r} comes before any "
                                      "task name; write NAME:key=value,key=value")
            if option.strip():
                specs[-1] = apply_overrides(specs[-1], [option.strip()])
    return specs


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    from alp_cli.overrides import load_yaml
    from alp_core import ConfigError

    settings: dict[str, Any] = {}
    if args.config:
        settings = load_yaml(args.config)
        unknown = sorted(set(settings) - set(CONFIG_KEYS))
        if unknown:
            raise ConfigError(f"{args.config}: unknown key(s) {', '.join(unknown)}; accepted: "
                              f"{', '.join(CONFIG_KEYS)}")
        if not isinstance(settings.get("tasks", []), list):
            raise ConfigError(f"{args.config}: tasks must be a list of {{name: ..., ...}}")
    tasks = list(settings.get("tasks") or []) + parse_tasks(args.tasks)
    for flag in ("out", "cache", "batch_size", "device", "workers", "threads", "label"):
        value = getattr(args, flag)
        if value is not None:
            settings[flag] = value
    settings["baseline"] = bool(args.baseline or settings.get("baseline", False))
    settings["tasks"] = tasks
    return settings


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from alp_core import ConfigError
    from alp_eval.cache import EmbeddingCache
    from alp_eval.protocol.run import (
        benchmark_task_names,
        default_cache_url,
        encoder_label,
        evaluate_benchmarks,
        resolve_benchmark_tasks,
    )

    settings = _settings(args)
    if settings.get("threads"):
        import torch

        torch.set_num_threads(int(settings["threads"]))
    if not settings["tasks"]:
        raise ConfigError("alp eval: no tasks; give --tasks NAME:root=FOLDER (benchmark "
                          f"tasks: {', '.join(benchmark_task_names())})")
    tasks = resolve_benchmark_tasks(settings["tasks"],
                                    batch_size=int(settings.get("batch_size", 16)),
                                    workers=int(settings.get("workers", 4)))
    from alp_eval.pretrained import PretrainedALP

    device = settings.get("device", "cpu")
    encoder = PretrainedALP.from_pretrained(args.model, device=device)
    cache = None
    if not args.no_cache:
        cache = EmbeddingCache(settings.get("cache") or default_cache_url(args.model))
    encoders = {settings.get("label") or encoder_label(args.model): encoder}
    if settings["baseline"]:
        encoders["random-init"] = PretrainedALP.from_config(
            encoder.config, seed=int(encoder.config.get("seed", 0)), device=device)
    model_path = Path(args.model)
    out = settings.get("out") or str(model_path.parent if model_path.is_file() else model_path)
    report = evaluate_benchmarks(
        encoders, tasks, cache, out_dir=out,
        meta={"model_path": str(model_path.absolute()), "device": str(device),
              "tasks": [{"name": t.name, **t.config.model_dump(mode="json")} for t in tasks]})
    from alp_eval.report import render_benchmark_markdown

    print(render_benchmark_markdown(report))
    print(f"report: {Path(out) / 'eval_report.md'}  (json: {Path(out) / 'eval_report.json'})")
    return 0
