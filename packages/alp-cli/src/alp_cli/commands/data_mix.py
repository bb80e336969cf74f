"""``alp data mix``: combine corpora's manifests into one training corpus (see alp_data.mix).

``alp data mix NAME=MANIFEST[:WEIGHT] ... --out DIR [--weighting hours|clips|none]
[--exclude FILE ...] [--subsets 0.1,0.25,0.5] [--seed 0] [--hash-workers N]
[--no-content-hash] [--compress]`` removes evaluation-set overlap and cross-corpus duplicates,
weights the sources, and writes ``DIR/train.jsonl``, the nested subsets and the mix report.
"""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Combine several corpora's manifests into one training corpus, CaptionStew-style.

Steps, in the order the sources are given (the first source wins every tie):
 1. --exclude: clips listed in an evaluation list are removed. A .txt file has one id per
    line (# comments, blank lines ignored); a .csv file needs a header and uses the first of
    the columns youtube_id, ytid, id, clip_id.
 2. Clips of the same YouTube video in two sources: the later one is dropped. Ids are
    compared after normalising: an audio suffix (.wav .flac ...), a leading "Y" and trailing
    "_<start>" / "_<start>_<end>" times are dropped, so AudioCaps "abc_30", WavCaps
    "Yabc.wav" and VGGSound "abc_000030" are one video "abc" (an 11-character YouTube id).
    Other ids are matched against exclusion lists only.
 3. Same audio in two sources (sha1 of the decoded int16 samples of the clip's segment, so a
    FLAC and a WAV of the same samples match): the later one is dropped. --no-content-hash
    skips this; --hash-workers runs it in processes.
 4. Weighting. hours (default): a source of H hours with weight W contributes W*H hours:
    floor(W) copies of every clip (copies get ids <id>#r1, #r2, ...) plus one more copy of
    a seeded random subset reaching the fractional part; W=0.5 keeps a seeded half of its
    hours, W=2 repeats every clip twice. Shares of the mix are W*H over the sum of W*H, so
    equal weights mix in proportion to hours, as the study did. clips: the same counted in
    clips. none: every clip once (no weights allowed).
 5. --subsets F,...: DIR/train_subset_F.jsonl keeps, per source, the clips of lowest seeded
    priority up to F of that source's hours (clips with --weighting clips); every smaller
    subset is inside every larger one.

Writes DIR/train.jsonl (.jsonl.gz with --compress), the subsets, DIR/mix_report.json (all
counts and the full lists of removed clips), DIR/mix_report.md and DIR/mix_report.png (needs
matplotlib: pip install 'alp-data[report]'). Same inputs and --seed give identical files.
"""


def add_arguments(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("mix", help="combine corpora's manifests into one training corpus",
                            description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", metavar="NAME=MANIFEST[:WEIGHT]",
                        help="a source: its name (the clips' corpus when they have none), its "
                             "manifest path or URL (.jsonl or .jsonl.gz) and its weight "
                             "(default 1)")
    parser.add_argument("--out", required=True, help="folder for the mixed corpus and report")
    parser.add_argument("--weighting", default="hours", metavar="hours|clips|none",
                        help="what a weight scales: a source's hours (default), its clip "
                             "count, or none (every clip once)")
    parser.add_argument("--exclude", action="append", default=[], metavar="FILE",
                        help="clips of an evaluation set to remove (.txt one id per line, or "
                             ".csv with a youtube_id/ytid/id/clip_id column); repeatable")
    parser.add_argument("--subsets", default="", metavar="F,F,...",
                        help="nested subsets for data-scaling runs, fractions in (0, 1]")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--hash-workers", type=int, default=1, metavar="N",
                        help="processes computing content hashes (the output does not depend "
                             "on it)")
    parser.add_argument("--no-content-hash", dest="content_hash", action="store_false",
                        help="skip the content-hash dedup (no audio is decoded)")
    parser.add_argument("--compress", action="store_true", help="write .jsonl.gz manifests")
    parser.add_argument("--backend", choices=["local", "dask"], default="local",
                        help="where hashes are computed: local processes (default) or a Dask "
                             "cluster (alp-data[dask]; --hash-workers processes without "
                             "--address)")
    parser.add_argument("--address", default=None, help="Dask scheduler address")


def run(args: argparse.Namespace) -> int:
    from alp_data.mix import MixConfig, mix, parse_fractions, parse_source

    config = MixConfig(
        sources=tuple(parse_source(s) for s in args.sources), out=args.out,
        weighting=args.weighting, exclude=tuple(args.exclude),
        subsets=parse_fractions(args.subsets) if args.subsets.strip() else (),
        seed=args.seed, hash_workers=args.hash_workers, content_hash=args.content_hash,
        compress=args.compress, backend=args.backend, address=args.address)
    result = mix(config)
    report = result.report
    print(f"mixed {len(config.sources)} sources -> {args.out} (weighting {config.weighting})")
    head = ("source", "input", "excluded", "dup id", "dup audio", "unreadable", "output",
            "hours")
    print(f"{head[0]:<16}" + "".join(f"{h:>11}" for h in head[1:]))
    for name, s in report["sources"].items():
        cells = (s["input"]["clips"], s["excluded"], s["duplicate_id"], s["duplicate_content"],
                 s["unreadable"], s["output"]["clips"])
        print(f"{name:<16}" + "".join(f"{c:>11}" for c in cells)
              + f"{s['output']['hours']:>11.3f}")
    total = report["total"]
    print(f"{'total':<16}{'':>55}{total['clips']:>11}{total['hours']:>11.3f}")
    if report["unreadable"]:
        print(f"{len(report['unreadable'])} clips could not be decoded for hashing (kept); "
              "listed in mix_report.json")
    for note in report["notes"]:
        print(f"note: {note}")
    for label, path in result.files.items():
        print(f"{label}: {path}")
    return 0
