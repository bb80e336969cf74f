"""``alp data shard``: manifest -> webdataset tar shards (see alp_data.shards)."""

from __future__ import annotations

import argparse


def add_arguments(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("shard", help="write tar shards (not built yet)")


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("alp data shard is not built yet")
