"""``alp embed MODEL FILES... --out X.npy``: one embedding row per audio file, in order.

``MODEL`` is anything :meth:`PretrainedALP.from_pretrained` reads (a save_pretrained folder,
a run folder, a checkpoint folder or its model.safetensors). Writes ``X.npy`` (float32,
files x dim) and ``X.files.txt`` (row i's file, as given). A missing or unreadable file is an
error naming it, found before any embedding is computed where the header shows it; with
``--skip-bad`` its row is NaN, and the skipped files are listed on stderr and in
``X.skipped.txt`` (file, tab, reason).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="save_pretrained folder, run folder, checkpoint folder or "
                        "model.safetensors")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any rate)")
    parser.add_argument("--out", required=True, help="the .npy file to write")
    parser.add_argument("--space", choices=("joint", "encoder"), default="joint",
                        help="joint: unit-norm audio-text embeddings (default); encoder: "
                        "mean-pooled encoder frames")
    parser.add_argument("--window-seconds", type=float, default=10.0,
                        help="longer files are embedded in windows of this length and "
                        "averaged, weighted by duration (default 10)")
    parser.add_argument("--hop-seconds", type=float, default=None,
                        help="window start spacing (default: the window length)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="windows per forward pass, and files decoded at a time")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--skip-bad", action="store_true",
                        help="write a NaN row for a missing/unreadable file instead of failing")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from alp_core import ConfigError
    from alp_data.audio import AudioError, audio_info, load_audio
    from alp_eval.pretrained import PretrainedALP

    out = Path(args.out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out {out}: expected a .npy file name")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
    files = [str(f) for f in args.files]
    bad: dict[int, str] = {}
    for i, path in enumerate(files):  # headers first: fail before any compute
        try:
            audio_info(path)
        except AudioError as err:
            if not args.skip_bad:
                raise
            bad[i] = str(err)
    model = PretrainedALP.from_pretrained(args.model, device=args.device)
    dim = model.embedding_dim(args.space)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    rows = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(files), dim))
    try:
        for start in range(0, len(files), args.batch_size):
            index, waves = [], []
            for i in range(start, min(start + args.batch_size, len(files))):
                if i in bad:
                    continue
                try:
                    waves.append(load_audio(files[i], model.sample_rate))
                except AudioError as err:
                    if not args.skip_bad:
                        raise
                    bad[i] = str(err)
                    continue
                index.append(i)
            if waves:
                emb = model.embed_audio(waves, sample_rate=model.sample_rate,
                                        batch_size=args.batch_size, space=args.space,
                                        window_seconds=args.window_seconds,
                                        hop_seconds=args.hop_seconds)
                rows[index] = emb.numpy()
        for i in bad:
            rows[i] = np.nan
        rows.flush()
        del rows
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    stem = out.with_suffix("")
    (stem.parent / (stem.name + ".files.txt")).write_text(
        "".join(f"{f}\n" for f in files), encoding="utf-8")
    skipped = stem.parent / (stem.name + ".skipped.txt")
    if bad:
        skipped.write_text("".join(f"{files[i]}\t{bad[i]}\n" for i in sorted(bad)),
                           encoding="utf-8")
        print(f"alp embed: skipped {len(bad)} of {len(files)} files (NaN rows), listed in "
              f"{skipped}:", file=sys.stderr)
        for i in sorted(bad):
            print(f"  row {i}: {bad[i]}", file=sys.stderr)
    else:
        skipped.unlink(missing_ok=True)
    print(f"wrote {out}: {len(files)} x {dim} ({args.space} space, model "
          f"{model.fingerprint})")
    return 0
