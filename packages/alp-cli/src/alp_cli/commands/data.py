"""``alp data ACTION``: ``prepare`` (corpus -> manifests, here), ``mix`` (CaptionStew-style
aggregation, :mod:`alp_cli.commands.data_mix`) and ``shard`` (manifest -> webdataset tar
shards, :mod:`alp_cli.commands.data_shard`).

``alp data prepare SOURCE --root ROOT --out DIR [key=value ...]``: corpus -> manifests.

Runs a registered data source (a corpus recipe such as ``audiocaps`` or ``clotho``, or any
plugin's) outside a training run, so a corpus is prepared once, checked by eye, and then named
by ``data.source: {name: manifest, train: DIR/train.jsonl, test: DIR/test.jsonl}``. Prints
clips, captions and hours per split, and how many clips were skipped for missing audio.

Every audio header is probed: ``workers=N`` threads by default, or ``backend=dask`` to probe
in chunks on a Dask cluster (``address=tcp://host:8786``, or without one a local cluster of
``workers`` processes); the manifests are the same bytes either way.
"""

from __future__ import annotations

import argparse


class _Intermixed(argparse.ArgumentParser):
    """A parser that takes ``key=value`` options after ``--out DIR`` as well as before it
    (plain argparse binds all positionals at their first occurrence)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True,
                                parser_class=_Intermixed)
    prep = sub.add_parser("prepare", help="write a source's train/test manifests",
                          description="write a data source's train/test manifests to --out")
    prep.add_argument("source", help="a registered data source (see `alp plugins`)")
    prep.add_argument("--root", default=None, help="the corpus folder (the recipe's `root`)")
    prep.add_argument("--out", required=True, help="folder for the manifests and the report")
    prep.add_argument("options", nargs="*", default=[],
                      help="recipe options as key=value, e.g. max_missing=0.05 compress=true; "
                      "header probing: workers=8 (threads), backend=dask [address=tcp://...]")
    from alp_cli.commands import data_mix, data_shard

    data_mix.add_arguments(sub)
    data_shard.add_arguments(sub)


def summarize(manifests: dict) -> list[tuple[str, int, int, float]]:
    """``(split, clips, captions, hours)`` read back from the written manifests."""
    from alp_data.manifest import read_manifest

    rows = []
    for split, path in manifests.items():
        entries = read_manifest(path)
        rows.append((split, len(entries), sum(len(e.captions) for e in entries),
                     sum(e.duration for e in entries) / 3600))
    return rows


def prepare(args: argparse.Namespace) -> int:
    from alp_cli.overrides import apply_overrides
    from alp_core import ConfigError
    from alp_core.manager import get_plugin_manager
    from alp_core.records import resolve_factory

    record = get_plugin_manager().get("data_source", args.source)
    values = apply_overrides({}, list(args.options))
    if args.root is not None:
        values["root"] = args.root
    try:  # a plugin's misspelled lazy path: named as `alp run --check` names it
        resolve_factory(record.factory)
    except Exception as err:
        raise ConfigError(f"data source {record.name!r} of plugin {record.plugin!r} "
                          f"({record.distribution or 'no distribution'}) has factory "
                          f"{record.factory!r}, which cannot be imported: {err}") from None
    source = record.build(values)
    manifests = source.prepare(args.out)
    print(f"{args.source} -> {args.out}")
    print(f"{'split':<8}{'clips':>10}{'captions':>10}{'hours':>10}")
    for split, clips, captions, hours in summarize(manifests):
        print(f"{split:<8}{clips:>10}{captions:>10}{hours:>10.3f}")
    report = getattr(source, "report", None) or {}
    if report:
        print(f"skipped {report['skipped_count']} of {report['listed']} listed clips "
              f"(budget {report['budget']}); details in the prepare report")
        if "excluded_count" in report:
            print(f"left out {report['excluded_count']} clips on purpose (e.g. the corpus's "
                  "blacklist); listed in the prepare report")
    for split, path in manifests.items():
        print(f"{split}: {path}")
    return 0


def run(args: argparse.Namespace) -> int:
    from alp_cli.commands import data_mix, data_shard

    actions = {"prepare": prepare, "mix": data_mix.run, "shard": data_shard.run}
    return actions[args.data_command](args)
