"""``alp data mix``: combine manifests into one training corpus (see alp_data.mix)."""

from __future__ import annotations

import argparse


def add_arguments(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("mix", help="combine manifests (not built yet)")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("alp data mix is not built yet")
