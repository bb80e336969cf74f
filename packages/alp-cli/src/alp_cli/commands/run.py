"""``alp run [CONFIG.yaml] [key=value ...]``: validate everything, then run."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=None,
                        help="run config YAML (default: the embedded default run)")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="key.path=value overrides, e.g. train.epochs=2 data.batch_size=16")
    parser.add_argument("--check", action="store_true",
                        help="validate the config, print the resolved form and stop")


def load_run_config(config: str | None, overrides: list[str]) -> dict:
    """The raw config mapping: YAML file (or {} for the embedded default) plus overrides."""
    from alp_cli.overrides import apply_overrides, load_yaml

    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        overrides, config = [config, *overrides], None  # `alp run train.epochs=1`
    raw = load_yaml(config) if config else {}
    return apply_overrides(raw, overrides)


def run(args: argparse.Namespace) -> int:
    import yaml

    from alp_cli.config import resolve_run

    resolved = resolve_run(load_run_config(args.config, args.overrides))
    if args.check:
        print(yaml.safe_dump(resolved.dump(), sort_keys=False), end="")
        return 0
    from alp_cli.run import run as execute

    execute(resolved)
    return 0
