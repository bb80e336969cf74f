"""Sound event detection: frame probabilities to events, and the DCASE metrics (sed_eval's).

Both metrics take, per file, a reference and an estimated list of :class:`Event` (or
``(onset, offset, label)`` tuples, seconds). The files scored are the reference's keys (a file
without events maps to ``[]``); a file missing from ``estimated`` has no detections.

* Segment-based (:func:`segment_based_metrics`, DCASE's 1 s segments): each file is cut into
  ``ceil(length / segment_length)`` segments, ``length`` being the file's duration if given,
  else the latest offset among its reference and estimated events; a class is active in a
  segment if an event of it overlaps the segment (``floor(onset / s) <= k < ceil(offset / s)``).
  Counts over all segments × classes give the micro precision, recall and F1; the error rate is
  ``(S + D + I) / N_ref`` with, per segment, ``S = min(N_ref, N_sys) - TP``,
  ``D = max(0, N_ref - N_sys)``, ``I = max(0, N_sys - N_ref)``.
* Event-based (:func:`event_based_metrics`): an estimated event is a hit of a reference event
  of the same label when ``|onset_est - onset_ref| <= t_collar`` and
  ``|offset_est - offset_ref| <= max(t_collar, percentage_of_length * length_ref)`` (DCASE:
  200 ms and 20 %); hits are paired one-to-one by a maximum bipartite matching per file and
  class. Unpaired references are then paired, in list order, with the first unpaired estimate
  (in list order) that meets both collars under another label: substitutions. ``D`` and ``I``
  are the references and estimates left over; ``ER = (S + D + I) / N_ref``.

Precision of a system with no output is 0 and F1 with precision = recall = 0 is 0 (sed_eval's
``empty_system_output_handling="zero_score"``, as in the DCASE task 4 evaluation); recall and
the error rate of a class without reference events are undefined (NaN), so ``macro_f1`` — the
mean class-wise F1 — averages the ``n_classes`` classes that have reference events. The one
deviation from sed_eval: it divides the error rate by ``N_ref + eps``, here ``N_ref = 0`` gives
NaN. When several maximum matchings exist, which events stay unpaired (and so the substitution
count, never TP or F1) may differ from sed_eval's choice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Event",
    "event_based_metrics",
    "frames_to_events",
    "median_filter_time",
    "segment_based_metrics",
]


@dataclass(frozen=True)
class Event:
    """One sound event: ``[onset, offset)`` in seconds and its class label."""

    onset: float
    offset: float
    label: str


EventLike = Event | tuple[float, float, str]


def _as_event(item: EventLike, where: str) -> Event:
    event = item if isinstance(item, Event) else Event(float(item[0]), float(item[1]), item[2])
    if not (math.isfinite(event.onset) and math.isfinite(event.offset)):
        raise ValueError(f"{where}: event {event} has a non-finite time")
    if event.onset < 0 or event.offset < event.onset:
        raise ValueError(f"{where}: event {event} needs 0 <= onset <= offset")
    return event


def _prepare(
    reference: Mapping[str, Sequence[EventLike]],
    estimated: Mapping[str, Sequence[EventLike]],
    labels: Sequence[str] | None,
) -> tuple[dict[str, tuple[list[Event], list[Event]]], list[str]]:
    """Per file (reference events, estimated events), and the class list."""
    extra = sorted(set(estimated) - set(reference))
    if extra:
        raise ValueError(
            f"estimated events for {len(extra)} file(s) without a reference entry "
            f"(e.g. {extra[:3]}); give files without reference events as []"
        )
    files = {
        name: (
            [_as_event(e, f"reference[{name!r}]") for e in reference[name]],
            [_as_event(e, f"estimated[{name!r}]") for e in estimated.get(name, ())],
        )
        for name in reference
    }
    seen = {e.label for ref, est in files.values() for e in (*ref, *est)}
    if labels is None:
        return files, sorted(seen)
    unknown = sorted(seen - set(labels))
    if unknown:
        raise ValueError(f"event labels {unknown} are not in labels {list(labels)}")
    return files, list(labels)


def _prf(ntp: float, nref: float, nsys: float) -> tuple[float, float, float]:
    """Precision (0 without output), recall (NaN without reference) and F1, as sed_eval."""
    precision = ntp / nsys if nsys else 0.0
    recall = ntp / nref if nref else math.nan
    if precision == 0 and recall == 0:
        return precision, recall, 0.0
    return precision, recall, 2 * precision * recall / (precision + recall)


def _summary(
    ntp: float, nref: float, nsys: float, subs: float, dels: float, ins: float,
    class_counts: dict[str, tuple[float, float, float]],
) -> dict[str, float]:
    precision, recall, f1 = _prf(ntp, nref, nsys)
    rate = (lambda count: count / nref) if nref else (lambda count: math.nan)
    out = {
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "error_rate": rate(subs + dels + ins),
        "substitution_rate": rate(subs),
        "deletion_rate": rate(dels),
        "insertion_rate": rate(ins),
        "n_ref": float(nref),
        "n_sys": float(nsys),
    }
    class_f1 = {label: _prf(*counts)[2] for label, counts in class_counts.items()}
    scored = [f for f in class_f1.values() if not math.isnan(f)]
    out["macro_f1"] = sum(scored) / len(scored) if scored else math.nan
    out["n_classes"] = float(len(scored))
    out.update({f"f1/{label}": f for label, f in class_f1.items()})
    return out


def _roll(events: list[Event], index: dict[str, int], n_segments: int, step: float) -> Tensor:
    roll = torch.zeros(n_segments, len(index), dtype=torch.bool)
    for e in events:
        roll[math.floor(e.onset / step) : math.ceil(e.offset / step), index[e.label]] = True
    return roll


def segment_based_metrics(
    reference: Mapping[str, Sequence[EventLike]],
    estimated: Mapping[str, Sequence[EventLike]],
    *,
    segment_length: float = 1.0,
    durations: Mapping[str, float] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """Segment-based micro F1 / precision / recall / error rate and macro F1 (module docstring).

    ``durations`` (seconds per file) fixes the scored length of the files it names; ``labels``
    the classes (default: every label met). Keys: ``f1``, ``precision``, ``recall``,
    ``error_rate``, ``substitution_rate``, ``deletion_rate``, ``insertion_rate``, ``n_ref`` and
    ``n_sys`` (active segment × class cells), ``macro_f1``, ``n_classes``, ``f1/<label>``.
    """
    if not segment_length > 0:
        raise ValueError(f"segment_length must be > 0, got {segment_length}")
    files, classes = _prepare(reference, estimated, labels)
    index = {label: i for i, label in enumerate(classes)}
    tp = torch.zeros(len(classes), dtype=torch.long)
    nref, nsys = torch.zeros_like(tp), torch.zeros_like(tp)
    subs = dels = ins = 0
    for name, (ref, est) in files.items():
        if durations is not None and name in durations:
            length = float(durations[name])
        else:
            length = max([0.0] + [e.offset for e in (*ref, *est)])
        n_segments = math.ceil(length / segment_length)
        r = _roll(ref, index, n_segments, segment_length)
        s = _roll(est, index, n_segments, segment_length)
        hit = r & s
        tp += hit.sum(0)
        nref += r.sum(0)
        nsys += s.sum(0)
        seg_ref, seg_sys, seg_tp = r.sum(1), s.sum(1), hit.sum(1)
        subs += int((torch.minimum(seg_ref, seg_sys) - seg_tp).sum())
        dels += int((seg_ref - seg_sys).clamp(min=0).sum())
        ins += int((seg_sys - seg_ref).clamp(min=0).sum())
    class_counts = {
        label: (float(tp[i]), float(nref[i]), float(nsys[i])) for label, i in index.items()
    }
    return _summary(
        float(tp.sum()), float(nref.sum()), float(nsys.sum()), subs, dels, ins, class_counts
    )


def _max_matching(candidates: list[list[int]]) -> dict[int, int]:
    """Maximum bipartite matching (augmenting paths): {estimate index: reference index}.

    ``candidates[j]`` lists the estimates that may pair with reference ``j``.
    """
    owner: dict[int, int] = {}

    def augment(j: int, visited: set[int]) -> bool:
        for i in candidates[j]:
            if i in visited:
                continue
            visited.add(i)
            if i not in owner or augment(owner[i], visited):
                owner[i] = j
                return True
        return False

    for j in range(len(candidates)):
        augment(j, set())
    return owner


def event_based_metrics(
    reference: Mapping[str, Sequence[EventLike]],
    estimated: Mapping[str, Sequence[EventLike]],
    *,
    t_collar: float = 0.2,
    percentage_of_length: float = 0.2,
    evaluate_onset: bool = True,
    evaluate_offset: bool = True,
    labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """Event-based micro F1 / precision / recall / error rate and macro F1 (module docstring).

    Defaults are DCASE's: a 200 ms onset collar and an offset collar of
    ``max(200 ms, 20 % of the reference event's length)``; ``evaluate_offset=False`` scores
    onsets only. Keys as :func:`segment_based_metrics` (``n_ref``/``n_sys`` count events).
    """
    if not t_collar > 0 or not 0 <= percentage_of_length <= 1:
        raise ValueError("t_collar must be > 0 and percentage_of_length in [0, 1]")
    if not (evaluate_onset or evaluate_offset):
        raise ValueError("evaluate at least one of onset and offset")
    files, classes = _prepare(reference, estimated, labels)

    def collars_met(ref: Event, est: Event) -> bool:
        if evaluate_onset and abs(ref.onset - est.onset) > t_collar:
            return False
        if evaluate_offset:
            allowed = max(t_collar, percentage_of_length * (ref.offset - ref.onset))
            return abs(ref.offset - est.offset) <= allowed
        return True

    counts = {label: [0, 0, 0] for label in classes}  # tp, n_ref, n_sys
    ntp = nref = nsys = subs = 0
    for ref, est in files.values():
        ref_paired, est_paired = [False] * len(ref), [False] * len(est)
        for label in {e.label for e in ref} | {e.label for e in est}:
            ref_ids = [j for j, e in enumerate(ref) if e.label == label]
            est_ids = [i for i, e in enumerate(est) if e.label == label]
            candidates = [[i for i in est_ids if collars_met(ref[j], est[i])] for j in ref_ids]
            matching = _max_matching(candidates)
            for i, j in matching.items():
                est_paired[i], ref_paired[ref_ids[j]] = True, True
            counts[label][0] += len(matching)
            counts[label][1] += len(ref_ids)
            counts[label][2] += len(est_ids)
            ntp += len(matching)
        nref += len(ref)
        nsys += len(est)
        subs += _substitutions(ref, est, ref_paired, est_paired, collars_met)
    dels, ins = nref - ntp - subs, nsys - ntp - subs
    class_counts = {label: (float(t), float(r), float(s)) for label, (t, r, s) in counts.items()}
    return _summary(ntp, nref, nsys, subs, dels, ins, class_counts)


def _substitutions(
    ref: list[Event], est: list[Event], ref_paired: list[bool], est_paired: list[bool],
    collars_met: Callable[[Event, Event], bool],
) -> int:
    """Unpaired references paired greedily (list order) with unpaired estimates within both
    collars (necessarily of another label: a same-label one would have been matched)."""
    taken = list(est_paired)
    count = 0
    for j, r in enumerate(ref):
        if ref_paired[j]:
            continue
        for i, e in enumerate(est):
            if not taken[i] and collars_met(r, e):
                taken[i] = True
                count += 1
                break
    return count


def median_filter_time(active: Tensor, window: int) -> Tensor:
    """Median filter along time (dim 0) of a (T, C) activity or probability map.

    ``window`` is odd; the edges are extended by mirroring with the edge sample repeated
    (``d c b a | a b c d | d c b a``, scipy.ndimage's ``reflect``), so the result equals
    ``scipy.ndimage.median_filter(x, size=(window, 1))``. ``window = 1`` returns the input.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError(f"median window must be a positive odd number of frames, got {window}")
    if active.dim() != 2:
        raise ValueError(f"median_filter_time expects (T, C), got {tuple(active.shape)}")
    if window == 1 or active.shape[0] == 0:
        return active
    n, half = active.shape[0], window // 2
    position = torch.arange(-half, n + half) % (2 * n)
    position = torch.where(position < n, position, 2 * n - 1 - position)
    padded = active[position]  # (T + window - 1, C)
    windows = padded.unfold(0, window, 1)  # (T, C, window)
    if active.dtype == torch.bool:
        return windows.sum(-1) > half
    return windows.median(-1).values


def frames_to_events(
    probs: Tensor,
    labels: Sequence[str],
    frame_hop: float,
    threshold: float | Sequence[float] | Tensor = 0.5,
    median_window: int = 1,
    time_offset: float = 0.0,
) -> list[Event]:
    """Events of one file from frame-level class probabilities ``probs`` (T, C).

    A frame is active for a class when its probability exceeds ``threshold`` (one value, or
    one per class); the activity is median-filtered over ``median_window`` frames (odd; as the
    DCASE baselines do; the same as median-filtering the probabilities then thresholding); each
    run of active frames ``[a, b)`` becomes ``Event(time_offset + a * frame_hop,
    time_offset + b * frame_hop, label)``. Events come sorted by onset, then class order.
    """
    probs = torch.as_tensor(probs).detach().cpu()
    if probs.dim() != 2 or probs.shape[1] != len(labels):
        raise ValueError(
            f"probs must be (frames, {len(labels)} classes), got {tuple(probs.shape)}"
        )
    if not frame_hop > 0:
        raise ValueError(f"frame_hop must be > 0, got {frame_hop}")
    thresholds = torch.as_tensor(threshold, dtype=probs.dtype).reshape(-1)
    if thresholds.numel() not in (1, len(labels)):
        raise ValueError(f"threshold: give one value or {len(labels)}, got {thresholds.numel()}")
    active = median_filter_time(probs > thresholds, median_window)
    edges = torch.diff(active.to(torch.int8), dim=0, prepend=torch.zeros(1, len(labels),
                       dtype=torch.int8), append=torch.zeros(1, len(labels), dtype=torch.int8))
    events = []
    for c, label in enumerate(labels):
        starts = torch.nonzero(edges[:, c] == 1).reshape(-1).tolist()
        ends = torch.nonzero(edges[:, c] == -1).reshape(-1).tolist()
        for a, b in zip(starts, ends, strict=True):
            events.append((a, c, Event(time_offset + a * frame_hop, time_offset + b * frame_hop,
                                       label)))
    return [event for _, _, event in sorted(events, key=lambda item: item[:2])]
