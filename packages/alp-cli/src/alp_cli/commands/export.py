"""``alp export RUN_DIR --out FILE``: a run's weights as one plain safetensors file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run folder")
    parser.add_argument("--out", required=True, help="the .safetensors file to write")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint folder name (default: the newest), e.g. step-00000500")


def run(args: argparse.Namespace) -> int:
    from alp_train.export import export_weights

    path = export_weights(args.run_dir, args.out, args.checkpoint)
    print(f"wrote {path}")
    return 0
