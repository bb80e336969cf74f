"""``alp export RUN_DIR --out FILE`` (a run's weights as one plain safetensors file) and/or
``--pretrained FOLDER`` (a Hugging Face-style folder that ``PretrainedALP.from_pretrained``,
``alp embed`` and the HEAR module load: config.json, model.safetensors, README.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="the run folder")
    parser.add_argument("--out", default=None, help="the .safetensors file to write")
    parser.add_argument("--pretrained", default=None, metavar="FOLDER",
                        help="write a save_pretrained folder (config, weights, model card)")
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint folder name, e.g. step-00000500 (default: the "
                        "run's final model, else its newest checkpoint)")


def run(args: argparse.Namespace) -> int:
    from alp_core import ConfigError

    if args.out is None and args.pretrained is None:
        raise ConfigError("alp export: give --out FILE.safetensors and/or --pretrained FOLDER")
    if args.out is not None:
        from alp_train.export import export_weights

        path = export_weights(args.run_dir, args.out, args.checkpoint)
        print(f"wrote {path}")
    if args.pretrained is not None:
        from alp_eval.pretrained import PretrainedALP

        run_dir = Path(args.run_dir)
        source = run_dir / "checkpoints" / args.checkpoint if args.checkpoint else run_dir
        model = PretrainedALP.from_pretrained(source)
        folder = model.save_pretrained(args.pretrained)
        print(f"wrote {folder} (model {model.fingerprint})")
    return 0
