"""Entry point of the ``alp`` command: sub-commands come from the ``alp_cli_commands`` hook."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from alp_cli.version import __version__
from alp_core import ALPError
from alp_core.manager import get_plugin_manager
from alp_core.records import resolve_factory


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, object]]:
    parser = argparse.ArgumentParser(
        prog="alp", description="ALP: audio-language pretraining and evaluation.")
    parser.add_argument("--version", action="version", version=f"alp-cli {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    # the DeepSpeed launcher (and torch.distributed.launch) put --local_rank=N right after the
    # module, before the command: `python -m alp_cli.main --local_rank=0 run ...`; the
    # LOCAL_RANK variable they set says the same, and is what the run reads
    parser.add_argument("--local_rank", "--local-rank", dest="launcher_local_rank", type=int,
                        default=None, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    pm = get_plugin_manager()
    for record in pm.records("command").values():
        try:  # a plugin command that cannot load must not take every other command down
            add_arguments = resolve_factory(record.add_arguments)
            p = sub.add_parser(record.name, help=record.help, description=record.help)
            add_arguments(p)
        except Exception as exc:
            pm.report_failure(record, f"command {record.name!r}: {type(exc).__name__}: {exc}")
            continue
        commands[record.name] = record
    return parser, commands


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        parser, commands = build_parser()
    except ALPError as err:
        print(f"alp: error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    # a rank started by torchrun or the DeepSpeed launcher says which it is in every line
    rank = os.environ.get("RANK") if "LOCAL_RANK" in os.environ else None
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=("" if rank is None else f"[rank {rank}] ")
                        + "%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    record = commands[args.command]
    try:
        run = resolve_factory(record.run)
    except Exception as exc:
        print(f"alp {args.command}: error: the command's plugin {record.plugin!r} "
              f"({record.distribution or '?'}) cannot load {record.run!r}: "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except ALPError as err:
        print(f"alp {args.command}: error: {err}", file=sys.stderr)
        return 2 if type(err).__name__ != "LaunchError" else 1
    except KeyboardInterrupt:
        print("alp: interrupted; files already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
