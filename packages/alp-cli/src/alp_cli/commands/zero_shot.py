"""``alp zero-shot MODEL FILE... --labels dog,cat,rain``: the likeliest labels of each file.

Each label fills every ``--template`` (default: the zero-shot eval task's templates); a class
embedding is the normalised mean of its prompt embeddings, and the probabilities are the
softmax of the model's logit scale times the audio-class cosines (see
:meth:`PretrainedALP.zero_shot`). Prints ``FILE: label p, label p, ...`` (``--top`` labels)
per file, or with ``--json`` one object per file with every label's probability.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="save_pretrained folder, run folder, checkpoint folder or "
                        "model.safetensors (needs a text tower)")
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any rate)")
    parser.add_argument("--labels", required=True,
                        help="comma-separated class names, e.g. dog,cat,rain")
    parser.add_argument("--template", action="append", default=None, dest="templates",
                        metavar="TEMPLATE",
                        help="prompt with a {label} placeholder; repeat for an ensemble "
                        "(default: the zero-shot eval task's templates)")
    parser.add_argument("--top", type=int, default=3, help="labels printed per file (text)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--window-seconds", type=float, default=10.0,
                        help="longer files are embedded in windows and averaged")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def parse_labels(text: str) -> list[str]:
    """``"dog, cat,rain"`` -> ``["dog", "cat", "rain"]``; at least two distinct labels."""
    from alp_core import ConfigError

    labels = [label.strip() for label in text.split(",") if label.strip()]
    if len(labels) < 2:
        raise ConfigError(f"--labels {text!r}: give at least two comma-separated labels, e.g. "
                          "dog,cat,rain")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(f"--labels: {repeated} listed more than once")
    return labels


def run(args: argparse.Namespace) -> int:
    from alp_core import ConfigError
    from alp_data.audio import audio_info
    from alp_eval.pretrained import DEFAULT_TEMPLATES, PretrainedALP

    labels = parse_labels(args.labels)
    if args.top < 1:
        raise ConfigError(f"--top must be >= 1, got {args.top}")
    for path in args.files:  # a missing file fails before any compute
        audio_info(str(path))
    model = PretrainedALP.from_pretrained(args.model, device=args.device)
    templates = tuple(args.templates) if args.templates else DEFAULT_TEMPLATES
    probs, predicted = model.zero_shot([str(f) for f in args.files], labels, templates,
                                       batch_size=args.batch_size,
                                       window_seconds=args.window_seconds)
    results = []
    for path, row, best in zip(args.files, probs.tolist(), predicted, strict=True):
        ranked = sorted(zip(labels, row, strict=True), key=lambda item: -item[1])
        results.append({"file": str(path), "label": best,
                        "probabilities": dict(zip(labels, row, strict=True)),
                        "top": [{"label": k, "probability": p} for k, p in ranked[:args.top]]})
    if args.json:
        print(json.dumps({"labels": labels, "templates": list(templates),
                          "logit_scale": model.logit_scale, "results": results}, indent=2))
        return 0
    for item in results:
        shown = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in item["top"])
        print(f"{item['file']}: {shown}")
    return 0
