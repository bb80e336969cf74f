"""Captioning metrics (the COCO caption evaluation code, ``pycocoevalcap``) and the
``captioning`` eval task: greedy captions of the test clips scored against their references.

BLEU-1..4, ROUGE-L and CIDEr-D need only the ``alp-eval[captioning]`` extra; METEOR also needs
Java (its jar ships with the library); SPICE, and so SPIDEr = mean(CIDEr-D, SPICE), also need
the Stanford CoreNLP 3.6.0 jars, which the library downloads on first use; here they are never
downloaded: without them SPICE and SPIDEr are reported as unavailable. Captions are tokenized as
in COCO (Stanford PTB tokenizer, lower case, punctuation dropped) when Java is present, else by
a simple lower-case word split (``tokenizer`` says which; the task's metric names then say
``CIDEr-D (simple tokens)``, since such scores are not the published metric). CIDEr-D takes
its document frequencies from the references scored together, so it is a corpus metric: score
whole test sets, not single clips (one clip scores 0). Nothing here imports torch or the
library at module level, so registering the task stays cheap.
"""

from __future__ import annotations

import importlib
import logging
import re
import shutil
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from alp_core import ComponentConfig, ConfigError
from alp_eval.context import EvalContext, TaskResult

__all__ = [
    "EXTRA",
    "METRICS",
    "CaptioningConfig",
    "CaptioningTask",
    "available_metrics",
    "caption_metrics",
    "reported_name",
    "unavailable_metrics",
]

log = logging.getLogger(__name__)

EXTRA = "alp-eval[captioning]"
LIBRARY = "pycocoevalcap"
INSTALL_HINT = f"pip install '{EXTRA}' (the {LIBRARY} package)"
BLEU = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
METRICS = ("CIDEr-D", *BLEU, "ROUGE-L", "METEOR", "SPICE", "SPIDEr")
"""Every metric name, in report order (the primary, CIDEr-D, first)."""
PRIMARY = "CIDEr-D"
_NEEDS_JAVA = ("METEOR", "SPICE", "SPIDEr")
_NEEDS_SPICE = ("SPICE", "SPIDEr")
_SPICE_JARS = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
Tokenizer = Literal["auto", "ptb", "simple"]


def _library() -> Any:
    """The ``pycocoevalcap`` package, or a :class:`ConfigError` naming the extra."""
    try:  # a namespace package (no __init__): import a module of it, so a stray folder won't do
        importlib.import_module(f"{LIBRARY}.bleu.bleu")
        return importlib.import_module(LIBRARY)
    except ImportError:
        raise ConfigError(
            f"captioning metrics need the {EXTRA} extra: {INSTALL_HINT}"
        ) from None


def _java() -> str | None:
    return shutil.which("java")


def _spice_lib() -> Path:
    return Path(next(iter(_library().__path__))) / "spice" / "lib"


def unavailable_metrics() -> dict[str, str]:
    """Metric name -> why it cannot be computed here (empty when every metric can)."""
    try:
        _library()
    except ConfigError as err:
        return dict.fromkeys(METRICS, str(err))
    out: dict[str, str] = {}
    if _java() is None:
        out.update(dict.fromkeys(_NEEDS_JAVA, "needs Java (no `java` on PATH)"))
        return out
    lib = _spice_lib()
    missing = [jar for jar in _SPICE_JARS if not (lib / jar).is_file()]
    if missing:
        out.update(dict.fromkeys(_NEEDS_SPICE, (
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars {missing} in {lib}; fetch them once "
            f"with network: python -m {LIBRARY}.spice.get_stanford_models"
        )))
    return out


def available_metrics() -> tuple[str, ...]:
    """The metrics that can be computed here, in report order."""
    missing = unavailable_metrics()
    return tuple(name for name in METRICS if name not in missing)


def _check_names(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown captioning metric(s) {unknown}; accepted: {list(METRICS)}")
    dup = sorted({n for n in names if list(names).count(n) > 1})
    if dup:
        raise ValueError(f"captioning metric(s) listed twice: {dup}")
    return tuple(names)


def _simple_tokens(text: str) -> str:
    """Lower-case words (apostrophes kept inside them), punctuation dropped, space-joined."""
    return " ".join(re.findall(r"\w+(?:['’]\w+)*", text.lower()))


def caption_tokenizer_used(tokenizer: Tokenizer) -> str:
    """The tokenizer ``tokenizer`` resolves to here: ``ptb`` (needs Java) or ``simple``."""
    return "ptb" if tokenizer == "ptb" or (tokenizer == "auto" and _java()) else "simple"


def reported_name(metric: str, tokenizer: str) -> str:
    """A metric's name in a report: the library's for COCO's PTB tokens, else marked with the
    tokenizer (``CIDEr-D (simple tokens)``)."""
    return metric if tokenizer == "ptb" else f"{metric} ({tokenizer} tokens)"


def _tokenize(groups: list[list[str]], tokenizer: Tokenizer) -> list[list[str]]:
    """Each group's texts tokenized (space-joined tokens, as the scorers read them)."""
    if caption_tokenizer_used(tokenizer) == "simple":
        return [[_simple_tokens(t) for t in group] for group in groups]
    if _java() is None:
        raise ConfigError("captioning tokenizer 'ptb' needs Java (no `java` on PATH); use "
                          "'simple' or 'auto'")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # one Java run for every text; it reads one caption a line, so newlines become spaces
    lines = {k: [{"caption": " ".join(t.split())} for t in group]
             for k, group in enumerate(groups)}
    tokenized = PTBTokenizer().tokenize(lines)
    return [tokenized[k] for k in range(len(groups))]


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()  # a Java process holding the paraphrase table (a few seconds to start)
    try:
        score, _ = scorer.compute_score(gts, res)
    finally:  # stop it and close every pipe now, not at garbage collection
        with scorer.lock:
            proc = scorer.meteor_p
            proc.stdin.close()
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
    return float(score)


def caption_metrics(
    candidates: list[str],
    references: list[list[str]],
    *,
    metrics: Sequence[str] | None = None,
    tokenizer: Tokenizer = "auto",
) -> dict[str, float]:
    """Corpus-level captioning metrics of ``candidates[i]`` against ``references[i]``.

    ``metrics``: names from :data:`METRICS`; None = every one available here
    (:func:`available_metrics`). Asking for an unavailable one, or calling without the extra
    installed, raises a :class:`ConfigError` that says what is missing. Scores are the
    library's: BLEU, ROUGE-L, METEOR and SPICE in [0, 1], CIDEr-D (and SPIDEr) on COCO's x10
    scale (0 to 10). The result holds the asked metrics in :data:`METRICS` order.
    """
    if len(candidates) != len(references):
        raise ValueError(
            f"{len(candidates)} candidates but {len(references)} reference lists; give one "
            "list of references per candidate"
        )
    if not candidates:
        raise ValueError("no captions to score")
    empty = [i for i, refs in enumerate(references) if not refs]
    if empty:
        raise ValueError(f"candidates {empty[:5]} have no reference caption")
    _library()
    missing = unavailable_metrics()
    if metrics is None:
        wanted = [name for name in METRICS if name not in missing]
    else:
        asked = set(_check_names(metrics))
        blocked = {name: missing[name] for name in METRICS if name in asked and name in missing}
        if blocked:
            raise ConfigError("captioning metrics unavailable here: " + "; ".join(
                f"{name}: {why}" for name, why in blocked.items()))
        wanted = [name for name in METRICS if name in asked]
    n = len(candidates)
    tokens = _tokenize([*map(list, references), *([c] for c in candidates)], tokenizer)
    gts, res = dict(enumerate(tokens[:n])), dict(enumerate(tokens[n:]))
    scores: dict[str, float] = {}
    if set(wanted) & {PRIMARY, "SPIDEr"}:
        from pycocoevalcap.cider.cider import Cider

        scores[PRIMARY] = float(Cider().compute_score(gts, res)[0])
    if set(wanted) & set(BLEU):
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({name: float(v) for name, v in zip(BLEU, bleu)})
    if "ROUGE-L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "METEOR" in wanted:
        scores["METEOR"] = _meteor(gts, res)
    if set(wanted) & set(_NEEDS_SPICE):
        from pycocoevalcap.spice.spice import Spice

        scores["SPICE"] = float(Spice().compute_score(gts, res)[0])
        if "SPIDEr" in wanted:
            scores["SPIDEr"] = (scores[PRIMARY] + scores["SPICE"]) / 2
    return {name: scores[name] for name in wanted}


def _library_version() -> str:
    try:
        return f"{LIBRARY} {metadata.version(LIBRARY)}"
    except metadata.PackageNotFoundError:
        return LIBRARY


class CaptioningConfig(ComponentConfig):
    """Captioning metrics of the model's greedy captions of the test clips.

    Every clip (or the first ``max_clips`` in loader order) is captioned in batches and scored
    against all of its reference captions; clips without a reference are left out. The primary
    metric is CIDEr-D (the first listed when ``metrics`` leaves it out). Needs a model with a
    caption decoder (else skipped, with a note) and the ``alp-eval[captioning]`` extra (else
    skipped, with a note naming it).
    """

    max_clips: int | None = Field(
        default=None, ge=1, description="caption only the first N test clips; None = all"
    )
    max_tokens: int | None = Field(
        default=None, ge=2,
        description="generation length cap (BOS included); None = the decoder's max_tokens",
    )
    num_beams: int | None = Field(
        default=1, ge=1, description="1 = greedy decoding; None = the decoder's own num_beams"
    )
    metrics: tuple[str, ...] | None = Field(
        default=None,
        description=f"metrics to compute, from {list(METRICS)}; None = every one whose "
        "dependencies are present (METEOR needs Java; SPICE and SPIDEr also the Stanford "
        "CoreNLP models); the others are listed in the result's details",
    )
    tokenizer: Tokenizer = Field(
        default="auto",
        description="'ptb' (COCO's Stanford PTB tokenizer, needs Java), 'simple' (lower-case "
        "words, no Java) or 'auto' (ptb when Java is present)",
    )
    samples: int = Field(
        default=4, ge=0, description="generated captions kept in the result's details"
    )

    @field_validator("metrics")
    @classmethod
    def _known(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one metric, or null for every available one")
            _check_names(value)
        return value


class CaptioningTask:
    """Caption the test clips with ``ctx.generate_captions`` and score them (see the config).

    Returns one :class:`TaskResult` named ``captioning``, or none with the reason in
    ``ctx.notes["captioning"]`` (and the log) when there is no caption decoder, the extra is
    missing, no metric is available, or no captioned clip has a reference.
    """

    name = "captioning"

    def __init__(self, config: CaptioningConfig | None = None) -> None:
        self.config = config or CaptioningConfig()

    def _skip(self, ctx: EvalContext, reason: str) -> list[TaskResult]:
        # a model without a decoder is the expected case for contrastive runs: no warning
        level = logging.INFO if "no caption decoder" in reason else logging.WARNING
        log.log(level, "%s skipped: %s", self.name, reason)
        ctx.notes[self.name] = f"skipped: {reason}"
        return []

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        """Generate, score, and return the ``captioning`` result (or skip with a note)."""
        cfg = self.config
        if ctx.generate_captions is None:
            return self._skip(ctx, "no caption decoder")
        try:
            _library()
        except ConfigError as err:
            return self._skip(ctx, str(err))
        missing = unavailable_metrics()
        asked = cfg.metrics or METRICS
        wanted = [name for name in asked if name not in missing]
        skipped = {name: missing[name] for name in asked if name in missing}
        if skipped:
            (log.warning if cfg.metrics else log.info)(
                "%s: metrics not computed: %s", self.name,
                "; ".join(f"{n}: {why}" for n, why in skipped.items()))
        if not wanted:
            return self._skip(ctx, f"none of the metrics {list(asked)} is available here")
        kwargs = {k: v for k, v in (("max_tokens", cfg.max_tokens),
                                    ("num_beams", cfg.num_beams)) if v is not None}
        generated = ctx.generate_captions(cfg.max_clips, **kwargs)
        refs_by_id = dict(zip(ctx.test.ids, ctx.test.captions))
        ids = [i for i in generated if [r for r in refs_by_id.get(i, ()) if r.strip()]]
        if not ids:
            return self._skip(ctx, "no captioned test clip has a reference caption")
        candidates = [generated[i] for i in ids]
        references = [[r for r in refs_by_id[i] if r.strip()] for i in ids]
        metrics = caption_metrics(candidates, references, metrics=wanted,
                                  tokenizer=cfg.tokenizer)
        used = caption_tokenizer_used(cfg.tokenizer)
        # scores over other tokens than COCO's PTB ones are not the published metric: their
        # names say so, so a report or a comparison never sets them beside PTB scores
        metrics = {reported_name(name, used): v for name, v in metrics.items()}
        details: dict[str, Any] = {
            "n_clips": len(ids),
            "n_references": sum(len(r) for r in references),
            "n_without_reference": len(generated) - len(ids),
            "empty_captions": sum(1 for c in candidates if not c.strip()),
            "decoding": kwargs,
            "tokenizer": used,
            "library": _library_version(),
            "skipped_metrics": skipped,
            "samples": [{"id": i, "generated": generated[i], "references": list(refs_by_id[i])}
                        for i in ids[: cfg.samples]],
        }
        primary = reported_name(PRIMARY, used)
        primary = primary if primary in metrics else next(iter(metrics))
        return [TaskResult(self.name, metrics, primary=primary, details=details)]
