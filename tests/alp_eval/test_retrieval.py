"""RetrievalTask wiring: both directions, perfect and reversed embeddings, gallery building."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from alp_eval.configs import RetrievalConfig
from alp_eval.context import EvalContext
from alp_eval.metrics import retrieval_metrics
from alp_eval.retrieval import RetrievalTask, build_gallery

# clips with 1, 2 and 3 captions so the two directions have different query counts
CAPTIONS = [("a dog barks",), ("rain on a roof", "heavy rain"), ("piano", "a slow piano", "keys")]


def _context(
    make_split, sign: float, captions=CAPTIONS, audio: torch.Tensor | None = None
) -> EvalContext:
    n = len(captions)
    audio = torch.eye(n) if audio is None else audio
    owner = {text: i for i, caps in enumerate(captions) for text in caps}

    def embed_text(texts: list[str]) -> torch.Tensor:
        return sign * torch.eye(n)[[owner[t] for t in texts]]

    test = make_split(torch.zeros(n, 2), [{} for _ in captions], list(captions), audio)
    return EvalContext(train=test, test=test, embed_text=embed_text)


def test_perfect_embeddings_score_one_everywhere(make_split):
    (result,) = RetrievalTask(RetrievalConfig()).run(_context(make_split, 1.0))
    assert result.task == "retrieval" and result.primary == "mean_R"
    expected = {f"{d}_{m}" for d in ("a2t", "t2a") for m in ("R@1", "R@5", "R@10", "mAP@10")}
    assert expected | {"mean_R", "mean_R@1"} == set(result.metrics)
    assert all(v == pytest.approx(1.0) for v in result.metrics.values())
    assert result.details["n_a2t_queries"] == 3 and result.details["n_t2a_queries"] == 6


def test_reversed_embeddings_rank_relevant_items_last(make_split):
    (result,) = RetrievalTask(RetrievalConfig(ks=(1, 2))).run(_context(make_split, -1.0))
    m = result.metrics
    assert m["a2t_R@1"] == 0 and m["t2a_R@1"] == 0 and m["mean_R@1"] == 0
    # a2t, gallery of 6 captions: clip0's caption ranks 6th; clip1's two rank 5th-6th;
    # clip2's three rank 4th-6th (relevant score -1 < 0 of the others)
    ap = [(1 / 6) / 1, (1 / 5 + 2 / 6) / 2, (1 / 4 + 2 / 5 + 3 / 6) / 3]
    assert m["a2t_mAP@10"] == pytest.approx(sum(ap) / 3)
    assert m["a2t_R@2"] == 0
    # t2a, gallery of 3 clips: each caption's clip ranks last (3rd)
    assert m["t2a_mAP@10"] == pytest.approx(1 / 3)
    assert m["t2a_R@2"] == 0


def test_directions_match_loop_built_relevance(make_split):
    gen = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(3, 3, generator=gen), dim=-1)
    ctx = _context(make_split, 1.0, audio=audio)
    (result,) = RetrievalTask(RetrievalConfig()).run(ctx)
    texts = [t for caps in CAPTIONS for t in caps]
    sim = audio @ ctx.embed_text(texts).T
    rel = torch.tensor([[t in caps for t in texts] for caps in CAPTIONS])
    a2t, t2a = retrieval_metrics(sim, rel), retrieval_metrics(sim.T, rel.T)
    for key in a2t:
        assert result.metrics[f"a2t_{key}"] == pytest.approx(a2t[key])
        assert result.metrics[f"t2a_{key}"] == pytest.approx(t2a[key])


def test_duplicate_captions_are_one_gallery_item_relevant_to_each_clip():
    texts, rel = build_gallery([("dog", "bark"), ("dog",), ()])
    assert texts == ["dog", "bark"]
    assert rel.tolist() == [[True, True], [True, False], [False, False]]
    texts, rel = build_gallery([("dog", "bark"), ("dog",)], dedupe=False)
    assert texts == ["dog", "bark", "dog"]
    assert rel.tolist() == [[True, True, False], [False, False, True]]


def test_clip_without_caption_is_gallery_only(make_split):
    captions = [("a",), ("b",), ()]
    audio = torch.eye(3)
    owner = {"a": 0, "b": 1}

    def embed_text(texts):
        return torch.eye(3)[[owner[t] for t in texts]]

    test = make_split(torch.zeros(3, 2), [{}] * 3, captions, audio)
    (result,) = RetrievalTask().run(EvalContext(test, test, embed_text))
    assert result.details["n_a2t_queries"] == 2
    assert result.metrics["a2t_R@1"] == 1.0 and result.metrics["t2a_R@1"] == 1.0


def test_skipped_without_joint_space(make_split, caplog):
    ctx = _context(make_split, 1.0)
    ctx.embed_text = None
    with caplog.at_level(logging.WARNING, logger="alp_eval.retrieval"):
        assert RetrievalTask().run(ctx) == []
    assert "retrieval skipped" in caplog.text


def test_text_batches_are_concatenated_in_order(make_split):
    calls = []
    ctx = _context(make_split, 1.0)
    inner = ctx.embed_text

    def counting(texts):
        calls.append(len(texts))
        return inner(texts)

    ctx.embed_text = counting
    (result,) = RetrievalTask(RetrievalConfig(text_batch_size=4)).run(ctx)
    assert calls == [4, 2]
    assert result.metrics["mean_R"] == pytest.approx(1.0)


@pytest.mark.parametrize("dedupe", [True, False])
def test_text_to_audio_has_a_query_per_caption_occurrence(make_split, dedupe):
    """Two clips share "a dog barks" (Clotho and AudioCaps hold such duplicates): text->audio
    still asks once per occurrence with only its own clip relevant, as the benchmarks'
    protocol does; merging them into one query relevant to both clips scored 1.0 here."""
    captions = [("a dog barks", "dog zero"), ("a dog barks", "dog one"), ("rain", "rain falls")]
    vectors = {"a dog barks": [1.0, 0, 0], "dog zero": [1, 0, 0.05], "dog one": [0.9, 0.1, 0.05],
               "rain": [0, 0, 1.0], "rain falls": [0, 0.05, 1.0]}
    audio = F.normalize(torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0, 0, 1.0]]), dim=-1)
    test = make_split(torch.zeros(3, 2), [{} for _ in captions], captions, audio)

    def embed(texts):
        return torch.tensor([vectors[t] for t in texts])

    ctx = EvalContext(train=test, test=test, embed_text=embed)
    (result,) = RetrievalTask(RetrievalConfig(dedupe_captions=dedupe)).run(ctx)
    hits, precisions = [], []  # the protocol, written out: rank the clips for each caption
    for clip, caps in enumerate(captions):
        for text in caps:
            scores = audio @ F.normalize(embed([text]), dim=-1)[0]
            order = sorted(range(3), key=lambda j: (-float(scores[j]), j))
            hits.append(order[0] == clip)
            precisions.append(1 / (order.index(clip) + 1))
    assert result.details["n_t2a_queries"] == 6
    assert result.metrics["t2a_R@1"] == pytest.approx(sum(hits) / 6)
    assert result.metrics["t2a_mAP@10"] == pytest.approx(sum(precisions) / 6)
    assert result.metrics["t2a_R@1"] < 1.0
