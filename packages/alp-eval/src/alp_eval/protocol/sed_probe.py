"""Sound event detection on frozen frames: a frame-level linear probe, then DCASE metrics.

Targets: each encoder frame ``i`` of a clip covers ``[i * hop, (i + 1) * hop)`` (``hop`` = the
encoder's seconds per frame) and is active for a class when an event of it overlaps the frame
(:func:`alp_eval.datasets.event_roll`). The probe is one sigmoid per class on the standardised
frame embedding (:func:`alp_eval.probe.fit_sigmoid_regression`); its L2 strength is chosen by
the frame-level macro mAP on the validation clips (the round's val split, else a seeded
``val_fraction`` of the train clips: whole clips, so neighbouring frames never straddle the
split) and refit on train + validation; at most ``max_train_frames`` frames (a seeded subset)
enter a fit. Test probabilities become events (:func:`alp_eval.sed.frames_to_events`:
threshold, median filter) scored against the reference events, both cut to the embedded part
of each clip (its first ``max_seconds``): segment-based and event-based F1 and error rate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from alp_eval.configs import LinearProbeConfig, SEDProbeConfig
from alp_eval.datasets import BenchmarkClip, event_roll
from alp_eval.metrics import mean_average_precision
from alp_eval.probe import _threads_for, fit_sigmoid_regression
from alp_eval.protocol.embeddings import ClipEmbeddings
from alp_eval.sed import event_based_metrics, frames_to_events, segment_based_metrics

__all__ = ["clipped_events", "median_window", "run_sed_round", "score_sed", "sed_targets"]

EventTuple = tuple[float, float, str]


def median_window(seconds: float, hop: float) -> int:
    """The odd number of frames closest to ``seconds`` (at least 1; a tie goes up)."""
    return max(1, 2 * math.floor((seconds / hop - 1) / 2 + 0.5) + 1)


def clipped_events(clip: BenchmarkClip, seconds: float) -> list[EventTuple]:
    """The clip's events inside its first ``seconds`` (offsets cut there)."""
    return [(ev.onset, min(ev.offset, seconds), ev.label) for ev in clip.events
            if ev.onset < seconds]


def sed_targets(clip: BenchmarkClip, classes: Sequence[str], hop: float, frames: int) -> Tensor:
    """(frames, classes) bool frame targets of ``clip`` at ``hop`` seconds per frame."""
    roll = event_roll(clip, classes, hop, duration=frames * hop)
    return torch.from_numpy(np.ascontiguousarray(roll[:frames]))


def score_sed(probs: Mapping[str, Tensor], reference: Mapping[str, Sequence[EventTuple]],
              durations: Mapping[str, float], classes: Sequence[str], hop: float,
              config: SEDProbeConfig | None = None) -> dict[str, float]:
    """Segment- and event-based metrics of frame probabilities ``probs[id]`` (T, C).

    Every id of ``reference`` is scored (a clip without probabilities has no detections).
    Keys: ``segment_f1`` / ``event_f1`` (micro), ``segment_f1_macro`` / ``event_f1_macro``
    (mean class F1), ``segment_error_rate`` / ``event_error_rate``.
    """
    config = config or SEDProbeConfig()
    window = median_window(config.median_seconds, hop)
    estimated = {
        clip_id: frames_to_events(p, list(classes), hop, config.threshold, window)
        for clip_id, p in probs.items()
    }
    segment = segment_based_metrics(reference, estimated, segment_length=config.segment_seconds,
                                    durations=durations, labels=list(classes))
    event = event_based_metrics(reference, estimated, t_collar=config.t_collar,
                                percentage_of_length=config.percentage_of_length,
                                labels=list(classes))
    return {
        "segment_f1": segment["f1"], "segment_f1_macro": segment["macro_f1"],
        "segment_error_rate": segment["error_rate"],
        "event_f1": event["f1"], "event_f1_macro": event["macro_f1"],
        "event_error_rate": event["error_rate"], "median_window_frames": float(window),
    }


def _subset(n: int, cap: int, generator: torch.Generator) -> Tensor:
    if n <= cap:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:cap].sort().values


def _frame_rows(emb: ClipEmbeddings, clips: Sequence[BenchmarkClip], classes: Sequence[str],
                cap: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """At most ``cap`` frames (a seeded subset) of ``clips``, float64 (n, D), with their
    targets (n, C); read from the flat frame store, so nothing is padded."""
    rows = emb.rows([c.id for c in clips])
    spans = [np.arange(emb.offsets[r], emb.offsets[r + 1]) for r in rows]
    flat = np.concatenate(spans) if spans else np.zeros(0, dtype=np.int64)
    keep = _subset(len(flat), cap, generator).numpy()
    assert emb.frames is not None
    x = torch.from_numpy(emb.frames[flat[keep]].astype(np.float64))
    y = torch.cat([sed_targets(c, classes, emb.frame_seconds, len(span))
                   for c, span in zip(clips, spans)])[torch.from_numpy(keep)]
    return x, y.to(torch.float64)


def run_sed_round(emb: ClipEmbeddings, roles: Mapping[str, Sequence[BenchmarkClip]],
                  classes: Sequence[str], probe: LinearProbeConfig, config: SEDProbeConfig,
                  seed: int) -> dict[str, float]:
    """Fit the frame probe of one protocol round and score its test clips (module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    train, val = list(roles["train"]), list(roles["val"])
    if not val:
        order = torch.randperm(len(train), generator=generator).tolist()
        n_val = min(max(1, round(len(train) * probe.val_fraction)), len(train) - 1)
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train or not val or not roles["test"]:
        raise ValueError(f"SED round needs train, validation and test clips; got {len(train)}, "
                         f"{len(val)} and {len(roles['test'])}")
    n_fit, n_val = (int(sum(len(emb.frames_for(c.id)) for c in part)) for part in (train, val))
    cap_fit = max(1, round(config.max_train_frames * n_fit / max(1, n_fit + n_val)))
    x_fit, y_fit = _frame_rows(emb, train, classes, cap_fit, generator)
    x_val, y_val = _frame_rows(emb, val, classes, max(1, config.max_train_frames - cap_fit),
                               generator)
    x_all = torch.cat([x_fit, x_val])
    mean, std = x_all.mean(0), x_all.std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    x_fit, x_val = (x_fit - mean) / std, (x_val - mean) / std
    best: tuple[float, float, float] | None = None
    with _threads_for(x_all.numel()):
        for wd in probe.weight_decays:
            weight, bias = fit_sigmoid_regression(x_fit, y_fit, wd, steps=probe.steps,
                                                  lr=probe.lr)
            logits = x_val @ weight + bias
            val_map = mean_average_precision(logits, y_val)["mAP"] if bool(y_val.any()) else 0.0
            val_loss = float(F.binary_cross_entropy_with_logits(logits, y_val))
            if best is None or (val_map, -val_loss) > (best[1], -best[2]):
                best = (wd, val_map, val_loss)
        assert best is not None
        weight, bias = fit_sigmoid_regression(torch.cat([x_fit, x_val]),
                                              torch.cat([y_fit, y_val]), best[0],
                                              steps=probe.steps, lr=probe.lr)
    hop = emb.frame_seconds
    probs, reference, durations = {}, {}, {}
    test_logits, test_targets = [], []
    seconds = dict(zip(emb.ids, emb.seconds.tolist()))
    for clip in roles["test"]:
        frames = torch.from_numpy(emb.frames_for(clip.id).astype(np.float64))
        logits = ((frames - mean) / std) @ weight + bias
        probs[clip.id] = torch.sigmoid(logits)
        test_logits.append(logits)
        test_targets.append(sed_targets(clip, classes, hop, frames.shape[0]))
        reference[clip.id] = clipped_events(clip, seconds[clip.id])
        durations[clip.id] = seconds[clip.id]
    out = score_sed(probs, reference, durations, classes, hop, config)
    targets = torch.cat(test_targets)
    out["frame_mAP"] = (mean_average_precision(torch.cat(test_logits), targets)["mAP"]
                        if bool(targets.any()) else math.nan)
    out["weight_decay"] = float(best[0])
    out["val_frame_mAP"] = float(best[1]) if bool(y_val.any()) else math.nan
    out["n_train_frames"] = float(len(x_fit) + len(x_val))
    return out
