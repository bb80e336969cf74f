"""One protocol round of a benchmark: its probes on the frozen embeddings, and the average.

Per round the train, val and test clips of :meth:`Benchmark.round_clips` that were embedded
are used (clips that failed to decode are left out and counted). Multiclass benchmarks get
:func:`alp_eval.probe.train_linear_probe`, multilabel ones
:func:`alp_eval.probe.train_multilabel_probe`, each with the round's val split as validation
(none: a seeded ``val_fraction`` of train) and the test split scored once; the attention
probe (:func:`alp_eval.attention_probe.train_attention_probe`) reads the frames the same way.
:func:`average_rounds` turns the rounds' metrics into mean and population std.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from alp_eval.configs import AttentionProbeConfig, LinearProbeConfig
from alp_eval.datasets import Benchmark, BenchmarkClip
from alp_eval.protocol.embeddings import ClipEmbeddings

__all__ = ["PRIMARY", "average_rounds", "round_roles", "run_attention_round",
           "run_linear_round", "targets"]

#: the primary metric of each probe on each task type
PRIMARY = {"multiclass": "accuracy", "multilabel": "mAP", "sed": "event_f1_macro"}
#: per-round values kept in the report but not averaged as results (chosen settings, counts)
BOOKKEEPING = ("weight_decay", "lr", "epoch", "n_classes", "n_classes_without_positives",
               "median_window_frames", "n_train_frames")


def round_roles(bench: Benchmark, index: int, emb: ClipEmbeddings, max_train: int | None = None,
                seed: int = 0) -> dict[str, list[BenchmarkClip]]:
    """The embedded clips of round ``index`` by role; ``max_train`` caps train (seeded)."""
    roles = {role: [c for c in clips if c.id in emb]
             for role, clips in bench.round_clips(index).items()}
    if max_train is not None and len(roles["train"]) > max_train:
        perm = torch.randperm(len(roles["train"]), generator=torch.Generator().manual_seed(seed))
        keep = sorted(perm[:max_train].tolist())
        roles["train"] = [roles["train"][i] for i in keep]
    return roles


def targets(bench: Benchmark, clips: Sequence[BenchmarkClip]) -> Tensor:
    """Class ids (multiclass, (n,)) or multi-hot rows (multilabel/sed, (n, C))."""
    index = {c: i for i, c in enumerate(bench.classes)}
    if bench.task == "multiclass":
        return torch.tensor([index[c.labels[0]] for c in clips], dtype=torch.long)
    y = torch.zeros(len(clips), len(bench.classes), dtype=torch.bool)
    for row, clip in enumerate(clips):
        for label in clip.labels:
            y[row, index[label]] = True
    return y


def _check_roles(bench: Benchmark, index: int, roles: Mapping[str, list[BenchmarkClip]]) -> None:
    if len(roles["train"]) < 2 or not roles["test"]:
        raise ValueError(f"{bench.name}: round {index} has {len(roles['train'])} train and "
                         f"{len(roles['test'])} test clips left after decoding; need >= 2 and "
                         ">= 1")


def run_linear_round(bench: Benchmark, index: int, roles: Mapping[str, list[BenchmarkClip]],
                     emb: ClipEmbeddings, config: LinearProbeConfig, seed: int
                     ) -> dict[str, float]:
    """The linear probe of one round on the pooled embeddings (module docstring)."""
    from alp_eval.probe import train_linear_probe, train_multilabel_probe

    _check_roles(bench, index, roles)
    ids = {role: [c.id for c in clips] for role, clips in roles.items()}
    x = {role: emb.pooled_of(ids[role]) for role in ids}
    y = {role: targets(bench, roles[role]) for role in roles}
    val: dict[str, Any] = {"x_val": x["val"], "y_val": y["val"]} if roles["val"] else {}
    if bench.task == "multiclass":
        return train_linear_probe(x["train"], y["train"], x["test"], y["test"],
                                  len(bench.classes), config, seed, **val)
    return train_multilabel_probe(x["train"], y["train"], x["test"], y["test"], config, seed,
                                  **val)


def run_attention_round(bench: Benchmark, index: int, roles: Mapping[str, list[BenchmarkClip]],
                        emb: ClipEmbeddings, config: AttentionProbeConfig, seed: int
                        ) -> dict[str, float]:
    """The attention probe of one round on the frame embeddings."""
    from alp_eval.attention_probe import train_attention_probe

    _check_roles(bench, index, roles)
    frames = {role: emb.frames_of([c.id for c in clips]) for role, clips in roles.items()
              if clips}
    y = {role: targets(bench, clips) for role, clips in roles.items()}
    val: dict[str, Any] = {}
    if roles["val"]:
        val = {"frames_val": frames["val"][0], "valid_val": frames["val"][1], "y_val": y["val"]}
    num_classes = len(bench.classes) if bench.task == "multiclass" else None
    return train_attention_probe(
        frames["train"][0], y["train"], frames["test"][0], y["test"], num_classes, config,
        seed, valid_train=frames["train"][1], valid_test=frames["test"][1], **val)


def _stats(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = sum(finite) / len(finite)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))


def average_rounds(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """``metric`` (mean over rounds, NaN rounds left out) and ``metric_std`` (population std;
    0 for one round) of every result metric; bookkeeping values are not averaged."""
    keys = [k for k in rounds[0] if k not in BOOKKEEPING] if rounds else []
    out: dict[str, float] = {}
    for key in keys:
        mean, std = _stats([float(r.get(key, math.nan)) for r in rounds])
        out[key], out[f"{key}_std"] = mean, std
    return out
