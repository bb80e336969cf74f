"""Audio-text retrieval on the captioned corpora's test sets (``alp eval``).

``audiocaps-retrieval``, ``clotho-retrieval``, ``musiccaps-retrieval`` and
``paraspeechcaps-retrieval`` read a corpus from its own published layout through the alp-data
recipe of the same corpus (``root`` is the recipe's root, ``loader`` its options, e.g.
``audio_pattern``), take its test split (AudioCaps ``test.csv``, Clotho ``evaluation``,
MusicCaps ``is_audioset_eval``, ParaSpeechCaps ``holdout``), embed every clip's first
``max_seconds`` in the joint space (long clips window by window, averaged by duration) and
every caption, and rank both ways with :class:`alp_eval.retrieval.RetrievalTask`: R@1/5/10
and mAP@10 for audio->text (a clip's query hits any of its n captions, five for AudioCaps and
Clotho) and text->audio (each caption's one clip). A clip whose audio fails to decode is
counted and left out. The model needs a text tower.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from alp_core.errors import ConfigError, DataError
from alp_eval.configs import BenchmarkTaskConfig, RetrievalConfig
from alp_eval.context import EvalContext, SplitEmbeddings, TaskResult

__all__ = ["RETRIEVAL_SETS", "RETRIEVAL_SET_CONFIGS", "RetrievalSetConfig", "RetrievalSetTask"]

log = logging.getLogger(__name__)

#: task name -> (alp-data recipe, domain, description)
RETRIEVAL_SETS: dict[str, tuple[str, str, str]] = {
    "audiocaps-retrieval": ("audiocaps", "sound", "AudioCaps test set, 5 captions per clip"),
    "clotho-retrieval": ("clotho", "sound", "Clotho evaluation set, 5 captions per clip"),
    "musiccaps-retrieval": ("musiccaps", "music", "MusicCaps AudioSet-eval clips"),
    "paraspeechcaps-retrieval": ("paraspeechcaps", "speech", "ParaSpeechCaps holdout set"),
}


class RetrievalSetConfig(BenchmarkTaskConfig):
    """A corpus's test set for audio-text retrieval (module docstring); ``loader`` holds the
    corpus recipe's options, ``linear_probe``/``attention``/``sed``/``rounds`` are unused."""

    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    window_seconds: float = Field(10.0, gt=0, description="embedding window of long clips")

    @model_validator(mode="after")
    def _loader_options(self) -> RetrievalSetConfig:  # the recipe's options, not a loader's
        if not self.benchmark:
            return self
        from alp_core.manager import get_plugin_manager

        recipe = RETRIEVAL_SETS[self.benchmark][0]
        fields = get_plugin_manager().get("data_source", recipe).config_cls.model_fields
        unknown = sorted(set(self.loader) - (set(fields) - {"root", "name"}))
        if unknown:
            raise ValueError(f"loader option(s) {', '.join(unknown)} unknown to the {recipe} "
                             f"recipe; accepted: {', '.join(sorted(set(fields) - {'root'}))}")
        return self


def _config(name: str) -> type[RetrievalSetConfig]:
    recipe, domain, description = RETRIEVAL_SETS[name]
    attrs: dict[str, Any] = {
        "__doc__": f"{description}: audio-text retrieval (the {recipe} recipe's test split).",
        "__annotations__": {"benchmark": ClassVar[str]}, "benchmark": name,
    }
    return type(f"{recipe.title().replace('_', '')}RetrievalConfig", (RetrievalSetConfig,),
                attrs)


RETRIEVAL_SET_CONFIGS: dict[str, type[RetrievalSetConfig]] = {
    name: _config(name) for name in RETRIEVAL_SETS
}


class RetrievalSetTask:
    """Built by the ``*-retrieval`` eval-task records; see the module docstring."""

    def __init__(self, config: RetrievalSetConfig, *, batch_size: int = 16,
                 workers: int = 4) -> None:
        if config.benchmark not in RETRIEVAL_SETS:
            raise ConfigError(f"RetrievalSetTask needs one of {sorted(RETRIEVAL_SETS)}")
        self.config, self.name, self.batch_size = config, config.benchmark, batch_size
        self.workers = max(1, int(workers))  # decoding threads (soundfile releases the GIL)

    def run(self, ctx: EvalContext) -> list[TaskResult]:
        raise ConfigError(f"eval task {self.name!r} reads its own corpus: run it with `alp eval "
                          f"CHECKPOINT --tasks {self.name}:root=...`")

    def test_entries(self) -> list[Any]:
        """The corpus's test split, read by its alp-data recipe from ``root``."""
        from alp_core.manager import get_plugin_manager
        from alp_data.manifest import read_manifest

        recipe = RETRIEVAL_SETS[self.name][0]
        record = get_plugin_manager().get("data_source", recipe)
        source = record.build({"root": self.config.root, **self.config.loader})
        with tempfile.TemporaryDirectory() as tmp:
            manifests = source.prepare(Path(tmp))
            return read_manifest(manifests["test"])

    def run_benchmark(self, encoder: Any, cache: Any = None) -> list[TaskResult]:
        import torch

        from alp_data.audio import load_audio
        from alp_data.scrub import scrub_url
        from alp_eval.retrieval import RetrievalTask

        cfg = self.config
        if not getattr(encoder, "has_text_tower", True):
            raise ConfigError(f"{self.name}: the model has no text tower, so no joint "
                              "audio-text space to retrieve in")
        t0 = time.perf_counter()
        entries = self.test_entries()
        if not entries:
            raise DataError(f"{self.name}: the test split under {cfg.root} holds no clips")
        kept, audio, failed = [], [], []
        rate = int(encoder.sample_rate)

        def decode(entry: Any) -> Any:
            span = min(entry.duration, cfg.max_seconds) if entry.duration else cfg.max_seconds
            try:
                return load_audio(entry.audio, rate, offset=entry.offset, duration=span)
            except DataError as err:
                return err

        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(self.workers)
        try:
            for start in range(0, len(entries), self.batch_size):
                waves = []
                batch = entries[start:start + self.batch_size]
                for entry, wave in zip(batch, pool.map(decode, batch), strict=True):
                    if isinstance(wave, DataError):
                        failed.append({"id": entry.id, "path": scrub_url(entry.audio),
                                       "reason": getattr(wave, "reason", "") or "unreadable",
                                       "error": str(wave)})
                        continue
                    waves.append(wave)
                    kept.append(entry)
                if waves:
                    audio.append(encoder.embed_audio(waves, sample_rate=rate,
                                                     batch_size=self.batch_size,
                                                     window_seconds=cfg.window_seconds))
        finally:
            pool.shutdown()
        if not kept:
            raise DataError(f"{self.name}: none of the {len(entries)} test clips could be "
                            f"decoded (first: {failed[0]['error']})")
        if failed:
            log.warning("%s: %d clips failed to decode and are left out", self.name, len(failed))
        embeds = torch.cat(audio).float()
        split = SplitEmbeddings([e.id for e in kept], embeds, embeds,
                                [tuple(e.captions) for e in kept], [{} for _ in kept])
        ctx = EvalContext(train=split, test=split, embed_text=encoder.embed_text)
        results = RetrievalTask(cfg.retrieval).run(ctx)
        details = {"benchmark": self.name, "domain": RETRIEVAL_SETS[self.name][1],
                   "task_type": "retrieval", "clips": {"listed": len(entries),
                                                       "failed_to_decode": len(failed),
                                                       "embedded": len(kept)},
                   "captions": sum(len(e.captions) for e in kept),
                   "failed": failed[:20], "seconds": round(time.perf_counter() - t0, 3)}
        return [TaskResult(self.name, r.metrics, r.primary, {**r.details, **details})
                for r in results]
