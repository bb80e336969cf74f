"""``alp data shard MANIFEST --out DIR``: a manifest's clips as webdataset-readable tar shards.

Writes ``DIR/shard-000000.tar ...`` and ``DIR/index.json`` (clip counts, seconds and per-clip
durations per shard) with :func:`alp_data.shards.writer.write_shards`; train from them with
``data.source: {name: shards, train: DIR, test: TEST_DIR}``.
"""

from __future__ import annotations

import argparse


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shard", help="write a manifest's clips as tar shards + index.json",
        description="write the clips of MANIFEST as tar shards (webdataset layout) with an "
        "index of clip counts and seconds per shard")
    p.add_argument("manifest", help="JSONL(.gz) manifest: a path or fsspec URL")
    p.add_argument("--out", required=True, help="folder (or URL) for the shards and index.json")
    p.add_argument("--target-size-mb", type=float, default=256.0,
                   help="about this many megabytes per shard (default 256)")
    p.add_argument("--max-clips", type=int, default=None,
                   help="at most this many clips per shard")
    p.add_argument("--workers", type=int, default=1, help="shards written in parallel")
    p.add_argument("--seed", type=int, default=0, help="seed of the clip order")
    p.add_argument("--no-shuffle", action="store_true", help="keep the manifest's order")
    p.add_argument("--backend", choices=["local", "dask"], default="local",
                   help="local processes (default) or a Dask cluster (alp-data[dask])")
    p.add_argument("--address", default=None,
                   help="Dask scheduler address (default: a local cluster of --workers)")
    p.add_argument("--max-missing", type=float, default=0.01,
                   help="fraction of clips allowed to be unreadable (default 0.01)")


def run(args: argparse.Namespace) -> int:
    from alp_data.shards.writer import write_shards

    report = write_shards(
        args.manifest, args.out, target_size_mb=args.target_size_mb,
        max_clips_per_shard=args.max_clips, seed=args.seed, shuffle=not args.no_shuffle,
        workers=args.workers, backend=args.backend, address=args.address,
        max_missing=args.max_missing)
    index = report.index
    size = sum(s.bytes for s in index.shards) / 1e6
    print(f"{len(index.shards)} shards, {index.clips} clips, {index.seconds / 3600:.3f} h, "
          f"{size:.1f} MB -> {report.index_path}")
    if report.skipped:
        print(f"skipped {len(report.skipped)} of {report.listed} clips (listed in the index's "
              f"'skipped'); first: {report.skipped[0]['path']}: {report.skipped[0]['error']}")
    return 0
