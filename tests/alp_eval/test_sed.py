"""Sound event detection metrics against a slow reference written from the sed_eval definitions
(and against sed_eval itself where it imports), and frame-to-event decoding against scipy."""

from __future__ import annotations

import math
import random
import warnings

import pytest
import torch

from alp_eval.sed import (
    Event,
    event_based_metrics,
    frames_to_events,
    median_filter_time,
    segment_based_metrics,
)

LABELS = ["bark", "speech", "tap"]


def _random_lists(seed: int, n_files: int = 8, grid: float = 0.05):
    """Reference events and a noisy system output: shifted copies (some relabelled, some
    dropped), and insertions. Times on a coarse grid, so collar boundaries are hit exactly."""
    rng = random.Random(seed)

    def snap(t: float) -> float:
        return max(0.0, round(t / grid) * grid)

    reference, estimated, durations = {}, {}, {}
    for f in range(n_files):
        name = f"file{f}"
        ref, est = [], []
        for _ in range(rng.randint(0, 5)):
            onset = snap(rng.uniform(0, 8))
            ref.append(Event(onset, snap(onset + rng.uniform(0, 2.5)), rng.choice(LABELS)))
        for e in ref:
            if rng.random() < 0.75:
                onset = snap(e.onset + rng.uniform(-0.3, 0.3))
                offset = max(onset, snap(e.offset + rng.uniform(-0.45, 0.45)))
                label = e.label if rng.random() < 0.8 else rng.choice(LABELS)
                est.append(Event(onset, offset, label))
                if rng.random() < 0.2:  # a near-duplicate detection: matching must pick one
                    est.append(Event(snap(onset + 0.05), offset, label))
        for _ in range(rng.randint(0, 2)):
            onset = snap(rng.uniform(0, 9))
            est.append(Event(onset, snap(onset + rng.uniform(0.1, 1.5)), rng.choice(LABELS)))
        rng.shuffle(est)
        reference[name] = ref
        if est or rng.random() < 0.5:  # some files have no entry in the system output at all
            estimated[name] = est
        durations[name] = 10.0
    return reference, estimated, durations


def _prf(tp, nref, nsys):
    precision = tp / nsys if nsys else 0.0
    recall = tp / nref if nref else math.nan
    if precision == 0 and recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _reference_segment_based(reference, estimated, durations=None, segment=1.0):
    """Loops over files, segments and classes; a class is active in a segment when one of its
    events overlaps the segment's interval."""
    tot = {"tp": 0, "ref": 0, "sys": 0, "S": 0, "D": 0, "I": 0}
    per_class = {label: [0, 0, 0] for label in LABELS}
    for name, ref in reference.items():
        est = estimated.get(name, [])
        if durations is not None:
            length = durations[name]
        else:
            length = max([0.0] + [e.offset for e in ref + est])
        for k in range(math.ceil(length / segment)):
            lo, hi = k * segment, (k + 1) * segment

            def active(events, label, lo=lo, hi=hi):
                return any(e.label == label and e.onset < hi and e.offset > lo for e in events)

            seg_tp = seg_ref = seg_sys = 0
            for label in LABELS:
                r, s = active(ref, label), active(est, label)
                seg_tp += r and s
                seg_ref += r
                seg_sys += s
                per_class[label][0] += r and s
                per_class[label][1] += r
                per_class[label][2] += s
            tot["tp"] += seg_tp
            tot["ref"] += seg_ref
            tot["sys"] += seg_sys
            tot["S"] += min(seg_ref, seg_sys) - seg_tp
            tot["D"] += max(0, seg_ref - seg_sys)
            tot["I"] += max(0, seg_sys - seg_ref)
    class_f1 = [_prf(*counts) for counts in per_class.values()]
    scored = [f for f in class_f1 if not math.isnan(f)]
    return {
        "f1": _prf(tot["tp"], tot["ref"], tot["sys"]),
        "error_rate": (tot["S"] + tot["D"] + tot["I"]) / tot["ref"],
        "substitution_rate": tot["S"] / tot["ref"],
        "deletion_rate": tot["D"] / tot["ref"],
        "insertion_rate": tot["I"] / tot["ref"],
        "macro_f1": sum(scored) / len(scored),
    }


def _all_maximum_matchings(pairs_ok, n_ref, n_est):
    """Every maximum one-to-one pairing of references and estimates, by brute force."""
    found = []

    def extend(j, used, chosen):
        if j == n_ref:
            found.append(tuple(chosen))
            return
        extend(j + 1, used, chosen)  # reference j stays unpaired
        for i in range(n_est):
            if i not in used and pairs_ok(j, i):
                extend(j + 1, used | {i}, [*chosen, (j, i)])

    extend(0, frozenset(), [])
    best = max(len(m) for m in found)
    return [m for m in found if len(m) == best]


def _reference_event_based(reference, estimated, t_collar=0.2, pct=0.2, offset=True):
    """sed_eval's event-based definitions, with brute-force matching. The substitution count
    depends on which maximum matching is taken, so every possible error rate is returned."""

    def ok(r, e):
        onset_ok = abs(r.onset - e.onset) <= t_collar
        offset_ok = abs(r.offset - e.offset) <= max(t_collar, pct * (r.offset - r.onset))
        return onset_ok and (offset_ok or not offset)

    tp = nref = nsys = 0
    per_class = {label: [0, 0, 0] for label in LABELS}
    subs_options = [0]
    for name, ref in reference.items():
        est = estimated.get(name, [])
        nref += len(ref)
        nsys += len(est)
        file_options = set()
        matchings = _all_maximum_matchings(
            lambda j, i, ref=ref, est=est: ref[j].label == est[i].label and ok(ref[j], est[i]),
            len(ref), len(est),
        )
        for matching in matchings:
            ref_left = [j for j in range(len(ref)) if j not in {p[0] for p in matching}]
            est_free = [i not in {p[1] for p in matching} for i in range(len(est))]
            subs = 0
            for j in ref_left:  # greedy, in list order, as sed_eval
                for i in range(len(est)):
                    if est_free[i] and ok(ref[j], est[i]):
                        est_free[i] = False
                        subs += 1
                        break
            file_options.add(subs)
        n_tp = len(matchings[0])
        tp += n_tp
        subs_options = sorted({a + b for a in subs_options for b in file_options})
        for label in LABELS:
            class_ref = [e for e in ref if e.label == label]
            class_est = [e for e in est if e.label == label]
            best = _all_maximum_matchings(
                lambda j, i, a=class_ref, b=class_est: ok(a[j], b[i]),
                len(class_ref), len(class_est),
            )
            per_class[label][0] += len(best[0])
            per_class[label][1] += len(class_ref)
            per_class[label][2] += len(class_est)
    assert tp == sum(c[0] for c in per_class.values())
    class_f1 = [_prf(*counts) for counts in per_class.values()]
    scored = [f for f in class_f1 if not math.isnan(f)]
    error_rates = sorted({(s + (nref - tp - s) + (nsys - tp - s)) / nref for s in subs_options})
    return {
        "f1": _prf(tp, nref, nsys),
        "precision": tp / nsys,
        "recall": tp / nref,
        "macro_f1": sum(scored) / len(scored),
        "error_rates": error_rates,
    }


@pytest.mark.parametrize("seed", range(6))
def test_segment_based_matches_reference(seed):
    reference, estimated, durations = _random_lists(seed)
    for kwargs in ({}, {"durations": durations}):
        got = segment_based_metrics(reference, estimated, labels=LABELS, **kwargs)
        want = _reference_segment_based(reference, estimated, kwargs.get("durations"))
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (key, kwargs)
    half = segment_based_metrics(reference, estimated, labels=LABELS, segment_length=0.5)
    want = _reference_segment_based(reference, estimated, segment=0.5)
    assert half["f1"] == pytest.approx(want["f1"], abs=1e-12)
    assert half["error_rate"] == pytest.approx(want["error_rate"], abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_event_based_matches_reference(seed):
    reference, estimated, _ = _random_lists(seed)
    for offset in (True, False):
        got = event_based_metrics(reference, estimated, labels=LABELS, evaluate_offset=offset)
        want = _reference_event_based(reference, estimated, offset=offset)
        for key in ("f1", "precision", "recall", "macro_f1"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (key, offset)
        assert any(got["error_rate"] == pytest.approx(er, abs=1e-12)
                   for er in want["error_rates"]), (got["error_rate"], want["error_rates"])


def test_event_based_hand_computed_case():
    reference = {
        "a": [Event(1.0, 3.0, "dog"), Event(5.0, 5.5, "cat"), Event(7.0, 9.0, "cat")],
        "b": [],
    }
    estimated = {
        "a": [
            Event(1.15, 3.35, "dog"),  # onset within 200 ms, offset within 20 % of 2 s: hit
            Event(5.1, 5.75, "cat"),  # offset 250 ms late, collar max(0.2, 0.1): miss, and no
            # other-label reference fits: an insertion (the cat at 5.0 is a deletion)
            Event(7.0, 9.0, "dog"),  # the right times under the wrong label: substitution
        ],
        "b": [Event(2.0, 3.0, "bird")],  # insertion in a file without events
    }
    got = event_based_metrics(reference, estimated)
    # TP 1, N_ref 3, N_sys 4, S 1, D 3 - 1 - 1 = 1, I 4 - 1 - 1 = 2
    assert got["precision"] == pytest.approx(1 / 4)
    assert got["recall"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(2 / 7)
    assert got["substitution_rate"] == pytest.approx(1 / 3)
    assert got["deletion_rate"] == pytest.approx(1 / 3)
    assert got["insertion_rate"] == pytest.approx(2 / 3)
    assert got["error_rate"] == pytest.approx(4 / 3)
    # class F1: dog P 1/2 R 1 -> 2/3; cat P 0 (1 output) R 0 -> 0; bird has no reference: out
    assert got["f1/dog"] == pytest.approx(2 / 3) and got["f1/cat"] == 0.0
    assert math.isnan(got["f1/bird"])
    assert got["macro_f1"] == pytest.approx(1 / 3) and got["n_classes"] == 2


def test_segment_based_hand_computed_case():
    reference = {"a": [Event(0.5, 2.0, "dog")]}
    estimated = {"a": [Event(1.2, 3.1, "dog"), Event(0.0, 0.4, "cat")]}
    got = segment_based_metrics(reference, estimated, durations={"a": 5.0})
    # 5 segments; dog ref in 0-1, est in 1-3 (3.1 reaches segment 3); cat est in 0
    # segment 0: ref {dog}, sys {cat} -> S 1; segment 1: TP; segments 2, 3: I 1 each
    assert got["n_ref"] == 2 and got["n_sys"] == 4
    assert got["precision"] == pytest.approx(1 / 4) and got["recall"] == pytest.approx(1 / 2)
    assert got["error_rate"] == pytest.approx((1 + 0 + 2) / 2)
    assert got["substitution_rate"] == pytest.approx(1 / 2)


def test_no_system_output_scores_zero_not_nan():
    reference = {"a": [Event(0.0, 1.0, "dog")]}
    for metric in (event_based_metrics, segment_based_metrics):
        got = metric(reference, {})
        assert got["f1"] == 0.0 and got["precision"] == 0.0 and got["macro_f1"] == 0.0
        assert got["error_rate"] == pytest.approx(1.0)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="without a reference entry"):
        event_based_metrics({"a": []}, {"b": [Event(0, 1, "dog")]})
    with pytest.raises(ValueError, match="onset <= offset"):
        segment_based_metrics({"a": [Event(2.0, 1.0, "dog")]}, {})
    with pytest.raises(ValueError, match="not in labels"):
        event_based_metrics({"a": [(0.0, 1.0, "dog")]}, {}, labels=["cat"])


def _import_sed_eval():
    """sed_eval (not a dependency) if it imports here; its dcase_util needs pkg_resources."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sed_eval
    except Exception as err:  # ImportError, or a warning turned error by an old setuptools
        pytest.skip(f"sed_eval is not importable: {err}")
    return sed_eval


def _as_dicts(name, events):
    return [
        {"filename": name, "event_label": e.label, "onset": e.onset, "offset": e.offset}
        for e in events
    ]


@pytest.mark.parametrize("seed", range(4))
def test_against_sed_eval(seed):
    sed_eval = _import_sed_eval()
    reference, estimated, durations = _random_lists(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segment = sed_eval.sound_event.SegmentBasedMetrics(
            event_label_list=LABELS, time_resolution=1.0
        )
        event = sed_eval.sound_event.EventBasedMetrics(
            event_label_list=LABELS, t_collar=0.2, percentage_of_length=0.2,
            empty_system_output_handling="zero_score",
        )
        segment.empty_system_output_handling = "zero_score"
        for name, ref in reference.items():
            r, e = _as_dicts(name, ref), _as_dicts(name, estimated.get(name, []))
            segment.evaluate(r, e, evaluated_length_seconds=durations[name])
            event.evaluate(r, e)
        seg_want, ev_want = segment.results(), event.results()
    seg = segment_based_metrics(reference, estimated, durations=durations, labels=LABELS)
    ev = event_based_metrics(reference, estimated, labels=LABELS)
    for got, want in ((seg, seg_want), (ev, ev_want)):
        overall = want["overall"]
        assert got["f1"] == pytest.approx(overall["f_measure"]["f_measure"], abs=1e-9)
        assert got["precision"] == pytest.approx(overall["f_measure"]["precision"], abs=1e-9)
        assert got["recall"] == pytest.approx(overall["f_measure"]["recall"], abs=1e-9)
        assert got["macro_f1"] == pytest.approx(
            want["class_wise_average"]["f_measure"]["f_measure"], abs=1e-9
        )
    assert seg["error_rate"] == pytest.approx(seg_want["overall"]["error_rate"]["error_rate"],
                                              abs=1e-9)
    possible = _reference_event_based(reference, estimated)["error_rates"]
    if len(possible) == 1:  # sed_eval's own pick among maximum matchings is not ours to match
        assert ev["error_rate"] == pytest.approx(
            ev_want["overall"]["error_rate"]["error_rate"], abs=1e-9
        )


def _scipy_median(x: torch.Tensor, window: int) -> torch.Tensor:
    ndimage = pytest.importorskip("scipy.ndimage")
    return torch.from_numpy(ndimage.median_filter(x.numpy(), size=(window, 1)))


@pytest.mark.parametrize("window", [1, 3, 5, 7, 31])
def test_median_filter_matches_scipy(window):
    gen = torch.Generator().manual_seed(window)
    probs = torch.rand(23, 4, generator=gen).double()
    active = probs > 0.5
    assert torch.equal(median_filter_time(active, window), _scipy_median(active, window))
    torch.testing.assert_close(median_filter_time(probs, window), _scipy_median(probs, window))
    # thresholding then filtering = filtering the probabilities then thresholding
    assert torch.equal(median_filter_time(active, window),
                       median_filter_time(probs, window) > 0.5)


def test_frames_to_events_hand_case():
    probs = torch.tensor(
        [[0.9, 0.1], [0.8, 0.2], [0.2, 0.7], [0.9, 0.6], [0.7, 0.1], [0.1, 0.1]]
    )
    # raw activity: class a frames 0,1,3,4; class b frames 2,3
    events = frames_to_events(probs, ["a", "b"], frame_hop=0.5, threshold=0.5, time_offset=1.0)
    assert events == [
        Event(1.0, 2.0, "a"), Event(2.0, 3.0, "b"), Event(2.5, 3.5, "a"),
    ]
    # a 3-frame median fills a's one-frame gap
    filtered = frames_to_events(probs, ["a", "b"], frame_hop=0.5, median_window=3)
    assert filtered == [Event(0.0, 2.5, "a"), Event(1.0, 2.0, "b")]
    # one threshold per class
    per_class = frames_to_events(probs, ["a", "b"], frame_hop=1.0, threshold=[0.85, 0.05])
    assert per_class == [Event(0.0, 1.0, "a"), Event(0.0, 6.0, "b"), Event(3.0, 4.0, "a")]


def test_frames_to_events_round_trip_through_the_metrics():
    gen = torch.Generator().manual_seed(0)
    truth = torch.zeros(100, 3, dtype=torch.bool)
    truth[10:30, 0] = truth[50:90, 1] = truth[5:95, 2] = True
    noisy = truth.double() * 0.6 + 0.3 * torch.rand(100, 3, generator=gen).double()
    labels = ["a", "b", "c"]
    reference = {"f": frames_to_events(truth.double(), labels, frame_hop=0.1)}
    estimated = {"f": frames_to_events(noisy, labels, frame_hop=0.1, median_window=5)}
    assert event_based_metrics(reference, estimated)["f1"] == 1.0
    assert segment_based_metrics(reference, estimated)["error_rate"] == 0.0


def test_event_accepts_tuples_and_pairs_all_combinations():
    # two same-label references, two estimates each fitting both: both pair
    ref = {"a": [(1.0, 2.0, "x"), (1.1, 2.1, "x")]}
    est = {"a": [(1.05, 2.05, "x"), (1.0, 2.0, "x")]}
    assert event_based_metrics(ref, est)["f1"] == 1.0
    # greedy pairing would fail here: ref0 fits est0 and est1, ref1 only est0
    ref = {"a": [(1.0, 2.0, "x"), (1.3, 2.3, "x")]}
    est = {"a": [(1.15, 2.15, "x"), (0.9, 1.9, "x")]}
    assert event_based_metrics(ref, est)["f1"] == 1.0


def test_median_window_is_the_closest_odd_frame_count():
    from alp_eval.protocol.sed_probe import median_window

    def closest_odd(seconds, hop):  # brute force; a tie goes to the larger window
        target = seconds / hop
        return min(range(1, 200, 2), key=lambda n: (abs(n - target), -n))

    cases = [(0.45, 0.08), (0.476, 0.04), (0.45, 0.01), (0.45, 0.02), (0.45, 0.04),
             (0.45, 0.1), (0.3, 0.1), (0.05, 0.1), (1.0, 0.16), (0.6, 0.1)]
    for seconds, hop in cases:
        assert median_window(seconds, hop) == closest_odd(seconds, hop), (seconds, hop)
    assert median_window(0.45, 0.08) == 5  # 5.6 frames: 5, not 7
