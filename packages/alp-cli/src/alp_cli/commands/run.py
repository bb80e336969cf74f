"""``alp run [CONFIG.yaml] [key=value ...]``: validate everything, then train and evaluate.

With ``train.nproc > 1`` this process starts the workers itself (torch's elastic launcher);
started by ``torchrun``/the DeepSpeed launcher, each process is one rank of the job.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", default=None,
                        help="run config YAML (default: the embedded default run)")
    parser.add_argument("overrides", nargs="*", default=[],
                        help="key.path=value overrides, e.g. train.epochs=2 data.batch_size=16")
    parser.add_argument("--check", action="store_true",
                        help="validate the config (and every plugin factory), print the "
                        "resolved form and stop")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue a stopped run from its latest checkpoint (its "
                        "config.yaml, plus any overrides given)")
    # --local_rank=N after the command too (where the launcher's own place for it is, see
    # alp_cli.main); its env LOCAL_RANK says the same
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help=argparse.SUPPRESS)


def load_run_config(config: str | None, overrides: list[str]) -> dict:
    """The raw config mapping: YAML file (or {} for the embedded default) plus overrides."""
    from alp_cli.overrides import apply_overrides, load_yaml

    if config is not None and "=" in config and not config.endswith((".yaml", ".yml")):
        overrides, config = [config, *overrides], None  # `alp run train.epochs=1`
    from alp_train.config import default_component_names

    raw = load_yaml(config) if config else {}
    return apply_overrides(raw, overrides, implied_names=default_component_names())


def run(args: argparse.Namespace) -> int:
    import yaml

    from alp_core import ConfigError
    from alp_train.checks import check_run
    from alp_train.config import resolve_run
    from alp_train.distributed import launched_by_torchrun

    config = args.config
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(f"--resume {run_dir}: no config.yaml there (not a run folder)")
        from alp_train.checkpoint import latest_checkpoint

        if latest_checkpoint(run_dir) is None:  # before any data is prepared
            raise ConfigError(f"--resume: {run_dir / 'checkpoints'} holds no complete "
                              "checkpoint")
        if config is not None:
            args.overrides, config = [config, *args.overrides], None
        config = str(run_dir / "config.yaml")
    raw = load_run_config(config, args.overrides)
    resolved = resolve_run(raw)
    check_run(resolved)
    if args.check:
        print(yaml.safe_dump(resolved.dump(), sort_keys=False), end="")
        return 0
    from alp_train.recipe import new_run_dir, write_config
    from alp_train.recipe import run as execute

    if args.resume:
        _record_resumed_config(resolved, Path(args.resume), write_config)

    nproc = resolved.config.train.nproc
    if nproc > 1 and not launched_by_torchrun():
        from alp_train.launch import LaunchPreempted, launch

        run_dir = Path(args.resume) if args.resume else new_run_dir(resolved.config)
        if not args.resume:
            write_config(resolved, run_dir)
        print(f"starting {nproc} processes ({resolved.engine.record.name}); run folder: "
              f"{run_dir}", flush=True)
        try:
            launch(resolved.dump(), run_dir, nproc, resume=bool(args.resume))
        except LaunchPreempted as stop:
            import sys

            print(f"alp run: {stop}", file=sys.stderr)
            return stop.exit_code
        return 0
    from alp_train.signals import Preempted

    try:
        execute(resolved, run_dir=args.resume, resume=bool(args.resume))
    except Preempted as stop:
        import sys

        print(f"alp run: {stop}", file=sys.stderr)
        return stop.exit_code
    return 0


def _record_resumed_config(resolved: Any, run_dir: Path, write_config: Any) -> None:
    """A resume with overrides (``train.epochs=...``, ``train.lr=...``) trains with them: the
    run folder's config.yaml becomes the resolved config, the one it replaces is kept as
    ``config.before-step-NNNNNNNN.yaml`` (the checkpoint resumed from)."""
    import yaml

    from alp_train.checkpoint import latest_checkpoint

    current = run_dir / "config.yaml"
    if yaml.safe_load(current.read_text()) == yaml.safe_load(
            yaml.safe_dump(resolved.dump(), sort_keys=False)):
        return
    latest = latest_checkpoint(run_dir)
    keep = run_dir / f"config.before-{latest.name if latest else 'resume'}.yaml"
    keep.write_text(current.read_text())
    write_config(resolved, run_dir)
    print(f"resuming with a changed config: {current} rewritten, the old one kept as "
          f"{keep.name}", flush=True)
