"""ZeroShotTask against a slow loop-by-loop reference: perfect, constant and shuffled text towers,
the prompt ensemble, per-key templates and readable names, prompts in the report, skips, errors."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from alp_core import ConfigError, resolve_component
from alp_eval.configs import ZeroShotConfig
from alp_eval.context import EvalContext
from alp_eval.report import build_report, render_markdown
from alp_eval.zeroshot import ZeroShotTask

EVENTS = ["dog_bark", "rain", "siren"]
TEMPLATES = ("{label}", "the sound of {label}", "a recording of {label}")


def _readable(raw: str, names: dict[str, str] | None = None) -> str:
    return (names or {}).get(raw, raw.replace("_", " "))


def _tower(vectors: dict[str, torch.Tensor]) -> Callable[[list[str]], torch.Tensor]:
    """A text tower that knows exactly these prompts (any other prompt is a KeyError)."""

    def embed_text(texts: list[str]) -> torch.Tensor:
        return torch.stack([vectors[t] for t in texts])

    return embed_text


def _class_tower(
    key_classes: dict[str, list[str]],
    templates: dict[str, tuple[str, ...]],
    vector: Callable[[str, int, int], torch.Tensor],
    names: dict[str, dict[str, str]] | None = None,
) -> Callable[[list[str]], torch.Tensor]:
    """Prompt of class number ``c`` of a key, template number ``t`` -> ``vector(key, c, t)``."""
    vectors = {}
    for key, classes in key_classes.items():
        for c, raw in enumerate(classes):
            for t, template in enumerate(templates[key]):
                prompt = template.format(label=_readable(raw, (names or {}).get(key)))
                vectors[prompt] = vector(key, c, t)
    return _tower(vectors)


def _context(make_split, labels: list[dict[str, str]], audio, embed_text) -> EvalContext:
    n = len(labels)
    test = make_split(torch.zeros(n, 2), labels, None, audio)
    return EvalContext(train=test, test=test, embed_text=embed_text)


def _reference(
    audio: torch.Tensor,
    values: list[str],
    templates: tuple[str, ...],
    embed_text: Callable[[list[str]], torch.Tensor],
    names: dict[str, str] | None = None,
) -> tuple[float, float]:
    """Accuracy and macro-F1 by loops: one prompt at a time, cosines by hand."""
    classes = sorted(set(values))
    class_vectors = []
    for raw in classes:
        total = None
        for template in templates:
            v = embed_text([template.format(label=_readable(raw, names))])[0].double()
            v = v / math.sqrt(sum(float(x) ** 2 for x in v))
            total = v if total is None else total + v
        mean = total / len(templates)
        class_vectors.append(mean / math.sqrt(sum(float(x) ** 2 for x in mean)))
    preds = []
    for row in audio.double():
        row_norm = math.sqrt(sum(float(x) ** 2 for x in row))
        best, best_score = 0, -math.inf
        for c, vec in enumerate(class_vectors):
            score = sum(float(a) * float(b) for a, b in zip(row, vec)) / row_norm
            if score > best_score:  # strict: the first class wins a tie
                best, best_score = c, score
        preds.append(classes[best])
    acc = sum(p == v for p, v in zip(preds, values)) / len(values)
    f1s = []
    for c in sorted(set(preds) | set(values)):
        tp = sum(p == c and v == c for p, v in zip(preds, values))
        fp = sum(p == c and v != c for p, v in zip(preds, values))
        fn = sum(p != c and v == c for p, v in zip(preds, values))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return acc, sum(f1s) / len(f1s)


def _balanced(classes: list[str], per_class: int, dim: int, seed: int = 0):
    """Labels (each class ``per_class`` times) and audio near the class's basis direction."""
    gen = torch.Generator().manual_seed(seed)
    values = [c for c in classes for _ in range(per_class)]
    ids = torch.tensor([classes.index(v) for v in values])
    audio = torch.eye(dim)[ids] * 3 + 0.1 * torch.randn(len(values), dim, generator=gen)
    return values, audio


def test_perfect_text_tower_scores_one_and_matches_reference(make_split):
    values, audio = _balanced(EVENTS, 3, 5)
    tower = _class_tower({"event": EVENTS}, {"event": TEMPLATES}, lambda k, c, t: torch.eye(5)[c])
    ctx = _context(make_split, [{"event": v} for v in values], audio, tower)
    (result,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(ctx)
    assert result.task == "zero-shot/event" and result.primary == "accuracy"
    assert result.metrics == {"accuracy": 1.0, "macro_f1": 1.0}
    assert _reference(audio, values, TEMPLATES, tower) == (1.0, 1.0)
    assert result.details["n_classes"] == 3 and result.details["chance"] == pytest.approx(1 / 3)


def test_constant_text_tower_is_at_chance(make_split):
    values, audio = _balanced(EVENTS, 4, 5)
    tower = _class_tower(
        {"event": EVENTS}, {"event": TEMPLATES}, lambda k, c, t: torch.ones(5)
    )
    ctx = _context(make_split, [{"event": v} for v in values], audio, tower)
    (result,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(ctx)
    # every class scores the same for every clip: the first class is always predicted
    assert result.metrics["accuracy"] == pytest.approx(1 / 3) == result.details["chance"]
    assert result.metrics["macro_f1"] == pytest.approx((2 * 4 / (8 + 8)) / 3)
    assert (result.metrics["accuracy"], result.metrics["macro_f1"]) == pytest.approx(
        _reference(audio, values, TEMPLATES, tower)
    )


def test_shuffled_text_tower_misses_every_clip(make_split):
    values, audio = _balanced(EVENTS, 3, 5)
    # each class's prompts embed as the next class's audio direction (a derangement)
    tower = _class_tower(
        {"event": EVENTS}, {"event": TEMPLATES}, lambda k, c, t: torch.eye(5)[(c + 1) % 3]
    )
    ctx = _context(make_split, [{"event": v} for v in values], audio, tower)
    (result,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(ctx)
    assert result.metrics == {"accuracy": 0.0, "macro_f1": 0.0}
    assert _reference(audio, values, TEMPLATES, tower) == (0.0, 0.0)


def test_prompt_ensemble_outvotes_a_misleading_template(make_split):
    values, audio = _balanced(EVENTS, 3, 5)

    def vector(key: str, c: int, t: int) -> torch.Tensor:
        # template 0 points at the wrong class with 10x the norm: only normalising each prompt
        # before averaging over the templates lets the two right ones win
        return 10 * torch.eye(5)[(c + 1) % 3] if t == 0 else torch.eye(5)[c]

    tower = _class_tower({"event": EVENTS}, {"event": TEMPLATES}, vector)
    ctx = _context(make_split, [{"event": v} for v in values], audio, tower)
    (ensemble,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(ctx)
    (alone,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES[:1])).run(ctx)
    assert ensemble.metrics["accuracy"] == 1.0
    assert alone.metrics["accuracy"] == 0.0
    assert _reference(audio, values, TEMPLATES, tower) == (1.0, 1.0)
    assert _reference(audio, values, TEMPLATES[:1], tower) == (0.0, 0.0)


def test_random_embeddings_match_reference_on_every_key(make_split):
    gen = torch.Generator().manual_seed(3)
    keys = {"event": ["dog_bark", "rain", "siren", "thunder"], "speaker": ["spk01", "spk02"]}
    n, dim = 40, 6
    labels = [
        {key: classes[int(torch.randint(len(classes), (1,), generator=gen))]
         for key, classes in keys.items()}
        for _ in range(n)
    ]
    audio = torch.randn(n, dim, generator=gen)
    tower = _class_tower(
        keys, dict.fromkeys(keys, TEMPLATES), lambda k, c, t: torch.randn(dim, generator=gen)
    )
    ctx = _context(make_split, labels, audio, tower)
    results = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES, text_batch_size=5)).run(ctx)
    assert [r.task for r in results] == ["zero-shot/event", "zero-shot/speaker"]
    for result, key in zip(results, keys):
        values = [labels[i][key] for i in range(n)]
        expected = _reference(audio, values, TEMPLATES, tower)
        assert (result.metrics["accuracy"], result.metrics["macro_f1"]) == pytest.approx(expected)
    # not a degenerate case: neither perfect nor always wrong
    assert 0 < results[0].metrics["accuracy"] < 1


def test_per_key_templates_and_readable_names_are_used_and_reported(make_split):
    speakers = ["spk01", "spk03"]
    names = {"speaker": {"spk03": "a deep male voice"}}
    templates = {"event": TEMPLATES, "speaker": ("a person speaking in {label}",)}
    config = ZeroShotConfig(
        templates=TEMPLATES, label_templates={"speaker": templates["speaker"]}, label_names=names
    )
    events, _ = _balanced(EVENTS[:2], 2, 4)
    labels = [{"event": e, "speaker": speakers[i % 2]} for i, e in enumerate(events)]
    audio = torch.stack(
        [torch.eye(4)[EVENTS.index(e)] + torch.eye(4)[2 + i % 2] for i, e in enumerate(events)]
    )

    def vector(key: str, c: int, t: int) -> torch.Tensor:
        return torch.eye(4)[c if key == "event" else 2 + c]

    # the tower only knows the overridden, renamed prompts: any other prompt is a KeyError
    tower = _class_tower({"event": EVENTS[:2], "speaker": speakers}, templates, vector, names)
    ctx = _context(make_split, labels, audio, tower)
    event, speaker = ZeroShotTask(config).run(ctx)
    assert event.metrics["accuracy"] == 1.0 and speaker.metrics["accuracy"] == 1.0
    assert speaker.details["templates"] == ["a person speaking in {label}"]
    assert speaker.details["class_names"] == {"spk01": "spk01", "spk03": "a deep male voice"}
    assert speaker.details["prompts"] == {
        "spk01": ["a person speaking in spk01"],
        "spk03": ["a person speaking in a deep male voice"],
    }
    assert event.details["templates"] == list(TEMPLATES)
    assert event.details["prompts"]["dog_bark"] == [
        "dog bark", "the sound of dog bark", "a recording of dog bark"
    ]
    markdown = render_markdown(build_report({"pretrained": [event, speaker]}, {}))
    section = markdown.split("## Zero-shot prompts", 1)[1]
    assert "`a person speaking in {label}`" in section
    assert "spk03 → a deep male voice" in section and "dog_bark → dog bark" in section
    assert "`the sound of {label}`" in section.split("zero-shot/event", 1)[1]


def test_classes_of_the_train_split_are_candidates_too(make_split):
    values, audio = _balanced(EVENTS[:2], 2, 3)
    train = make_split(torch.zeros(1, 2), [{"event": EVENTS[2]}])
    test = make_split(torch.zeros(len(values), 2), [{"event": v} for v in values], None, audio)
    # the train-only class is what the tower makes every clip closest to
    tower = _class_tower(
        {"event": EVENTS}, {"event": TEMPLATES},
        lambda k, c, t: torch.ones(3) if c == 2 else torch.eye(3)[c] - 1,
    )
    ctx = EvalContext(train=train, test=test, embed_text=tower)
    (result,) = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(ctx)
    assert result.details["n_classes"] == 3 and result.metrics["accuracy"] == 0.0


def test_single_class_key_is_skipped_with_a_note(make_split, caplog):
    values, audio = _balanced(EVENTS, 1, 3)
    labels = [{"event": v, "domain": "environment"} for v in values]
    tower = _class_tower(
        {"event": EVENTS, "domain": ["environment"]}, dict.fromkeys(("event", "domain"), TEMPLATES),
        lambda k, c, t: torch.eye(3)[c],
    )
    with caplog.at_level(logging.WARNING, logger="alp_eval.zeroshot"):
        results = ZeroShotTask(ZeroShotConfig(templates=TEMPLATES)).run(
            _context(make_split, labels, audio, tower)
        )
    assert [r.task for r in results] == ["zero-shot/event"]
    assert "zero-shot/domain skipped" in caplog.text


@pytest.mark.parametrize("missing", ["embed_text", "audio_embeds"])
def test_no_joint_space_is_skipped_with_a_note(make_split, caplog, missing):
    values, audio = _balanced(EVENTS, 1, 3)
    tower = _class_tower({"event": EVENTS}, {"event": TEMPLATES}, lambda k, c, t: torch.eye(3)[c])
    ctx = _context(
        make_split, [{"event": v} for v in values], None if missing == "audio_embeds" else audio,
        None if missing == "embed_text" else tower,
    )
    with caplog.at_level(logging.WARNING, logger="alp_eval.zeroshot"):
        assert ZeroShotTask().run(ctx) == []
    assert "zero-shot skipped" in caplog.text and "no text tower" in caplog.text


@pytest.mark.parametrize(
    ("options", "template"),
    [
        ({"templates": ["the sound of {lable}"]}, "the sound of {lable}"),
        ({"templates": ["{label}", "a {} clip"]}, "a {} clip"),
        ({"templates": ["{label!r}"]}, "{label!r}"),
        ({"templates": ["a recording"]}, "a recording"),
        ({"label_templates": {"speaker": ["{speaker} talking"]}}, "{speaker} talking"),
    ],
)
def test_bad_template_is_a_config_error_naming_it(options, template):
    with pytest.raises(ConfigError) as err:
        resolve_component(None, "eval_task", {"name": "zero-shot", **options}, "eval.tasks.2")
    assert repr(template) in str(err.value) and "eval.tasks.2" in str(err.value)


def test_registered_and_in_the_default_task_list():
    from alp_train.config import EvalConfig

    task = resolve_component(None, "eval_task", {"name": "zero-shot"}, "eval.tasks.2").build()
    assert isinstance(task, ZeroShotTask)
    assert all("{label}" in t for t in task.config.templates) and len(task.config.templates) > 1
    assert {"name": "zero-shot"} in EvalConfig().tasks


def test_ensemble_embedding_is_normalised_mean_of_normalised_prompts(make_split):
    # direct check of the class embedding against the CLIP recipe on random prompt vectors
    gen = torch.Generator().manual_seed(1)
    vecs = {c: torch.randn(len(TEMPLATES), 4, generator=gen) for c in range(2)}
    tower = _class_tower(
        {"event": EVENTS[:2]}, {"event": TEMPLATES}, lambda k, c, t: vecs[c][t]
    )
    from alp_eval.zeroshot import class_embeddings

    ctx = EvalContext(train=None, test=None, embed_text=tower)  # type: ignore[arg-type]
    emb, prompts = class_embeddings(ctx, ["dog bark", "rain"], TEMPLATES, batch_size=2)
    for c in range(2):
        expected = F.normalize(F.normalize(vecs[c], dim=-1).mean(0), dim=0)
        assert torch.allclose(emb[c], expected, atol=1e-6)
    assert prompts[1] == ["rain", "the sound of rain", "a recording of rain"]
