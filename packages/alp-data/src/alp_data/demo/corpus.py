"""Writes the deterministic demo corpus: FLAC clips, train/test JSONL manifests, corpus.json.

Clip ``i`` draws everything from its own seed stream ``(seed, i)``, so the bytes written do not
depend on how many worker processes render them. Domains rotate with the index (balanced), and
the held-out split is stratified by domain and by each domain's main class.
"""

from __future__ import annotations

import json
import math
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from pydantic import Field, model_validator

from alp_core import ComponentConfig
from alp_data.demo import dsp, environment, music, speech
from alp_data.demo.captions import CAPTION_STYLES, make_captions

VERSION = "alp-demo-2"  # 2: knock counts count only the knocks a clip holds
DOMAINS = ("speech", "music", "environment")
#: probe task -> (domain whose clips carry it, or None for every clip; its classes)
TASKS: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "domain": (None, DOMAINS),
    "speaker": ("speech", tuple(s.name for s in speech.SPEAKERS)),
    "speaking_rate": ("speech", speech.SPEAKING_RATES),
    "intonation": ("speech", speech.INTONATIONS),
    "instrument": ("music", music.INSTRUMENTS),
    "tempo": ("music", music.TEMPOS),
    "event": ("environment", environment.EVENTS),
    "background": ("environment", environment.BACKGROUNDS),
}
_SYNTHS = {"speech": speech, "music": music, "environment": environment}
_MAIN_TASK = {"speech": "speaker", "music": "instrument", "environment": "event"}
_SPLIT_STREAM = 1  # seed-sequence key of the split shuffle; clips use (0, index)


class DemoCorpusConfig(ComponentConfig):
    """Size, seed and audio format of the generated demo corpus."""

    num_clips: int = Field(2000, gt=0, description="clips in total, across both splits")
    seed: int = Field(0, ge=0, description="root seed; same seed, same bytes")
    sample_rate: int = Field(16000, ge=16000, le=48000, description="Hz, mono")
    min_seconds: float = Field(1.5, ge=0.5, le=30.0, description="shortest clip")
    max_seconds: float = Field(4.0, ge=0.5, le=30.0, description="longest clip")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held-out share of each domain")
    num_workers: int = Field(2, ge=1, description="processes; the output is the same for any")

    @model_validator(mode="after")
    def _check_durations(self) -> DemoCorpusConfig:
        if self.min_seconds > self.max_seconds:
            raise ValueError(
                f"min_seconds ({self.min_seconds}) must not exceed max_seconds "
                f"({self.max_seconds})"
            )
        return self


def clip_id(index: int, num_clips: int) -> str:
    """``<domain>-<index>`` with the index zero-padded to at least five digits."""
    width = max(5, len(str(num_clips - 1)))
    return f"{DOMAINS[index % len(DOMAINS)]}-{index:0{width}d}"


def _clip_rngs(seed: int, index: int) -> list[np.random.Generator]:
    """Independent streams for attributes, audio, captions and level of clip ``index``."""
    children = np.random.SeedSequence(entropy=seed, spawn_key=(0, index)).spawn(4)
    return [np.random.default_rng(child) for child in children]


def render_clip(index: int, config: DemoCorpusConfig) -> tuple[np.ndarray, dict[str, Any]]:
    """Synthesise clip ``index``: its 16-bit samples and its manifest row (without a split)."""
    attr_rng, audio_rng, caption_rng, level_rng = _clip_rngs(config.seed, index)
    domain = DOMAINS[index % len(DOMAINS)]
    synth = _SYNTHS[domain]
    attrs = synth.sample_attributes(attr_rng)
    seconds = attr_rng.uniform(config.min_seconds, config.max_seconds)
    num_samples = int(round(seconds * config.sample_rate))
    signal = synth.synthesize(attrs, num_samples, config.sample_rate, audio_rng)
    audio = dsp.finalize(signal, level_rng)
    labels = {"domain": domain}
    labels.update({task: attrs[task] for task, (dom, _) in TASKS.items() if dom == domain})
    name = clip_id(index, config.num_clips)
    row = {
        "id": name,
        "audio": f"audio/{name}.flac",
        "duration": round(num_samples / config.sample_rate, 4),
        "sample_rate": config.sample_rate,
        "captions": make_captions(domain, attrs, caption_rng),
        "labels": labels,
    }
    return audio, row


def _write_clip(job: tuple[int, DemoCorpusConfig, str]) -> dict[str, Any]:
    """Worker: render one clip, write its FLAC next to the manifests, return its row."""
    index, config, root = job
    audio, row = render_clip(index, config)
    sf.write(Path(root) / row["audio"], audio, config.sample_rate, format="FLAC", subtype="PCM_16")
    return row


def assign_splits(rows: list[dict[str, Any]], seed: int, test_fraction: float) -> None:
    """Set each row's ``split``: within a domain, clips ordered by main class (shuffled inside
    a class) are taken into ``test`` at evenly spaced positions, so every class is held out."""
    rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(_SPLIT_STREAM,)))
    shuffle = rng.random(len(rows))
    for domain in DOMAINS:
        members = [i for i, r in enumerate(rows) if r["labels"]["domain"] == domain]
        task = _MAIN_TASK[domain]
        classes = TASKS[task][1]
        members.sort(key=lambda i: (classes.index(rows[i]["labels"][task]), shuffle[i]))
        for position, i in enumerate(members):
            held = math.floor((position + 1) * test_fraction) > math.floor(position * test_fraction)
            rows[i]["split"] = "test" if held else "train"


def _summary(config: DemoCorpusConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The corpus.json content: config, tasks with classes, and counts per split."""
    splits = ("train", "test")
    counts: dict[str, Any] = {s: sum(r["split"] == s for r in rows) for s in splits}
    counts["by_domain"] = {
        d: {s: sum(r["split"] == s and r["labels"]["domain"] == d for r in rows) for s in splits}
        for d in DOMAINS
    }
    tasks = []
    for task, (domain, classes) in TASKS.items():
        per_split = {
            s: Counter(r["labels"][task] for r in rows if r["split"] == s and task in r["labels"])
            for s in splits
        }
        tasks.append({
            "name": task,
            "domain": domain,
            "classes": list(classes),
            "counts": {s: {c: per_split[s][c] for c in classes} for s in splits},
        })
    seconds = {s: round(sum(r["duration"] for r in rows if r["split"] == s), 3) for s in splits}
    return {
        "name": "alp-demo",
        "version": VERSION,
        "config": config.model_dump(),
        "caption_styles": list(CAPTION_STYLES),
        "manifests": {"train": "train.jsonl", "test": "test.jsonl"},
        "tasks": tasks,
        "counts": counts,
        "seconds": seconds,
    }


def generate_demo_corpus(
    out_dir: str | Path, config: DemoCorpusConfig | None = None
) -> dict[str, Path]:
    """Write ``out_dir/audio/<id>.flac``, ``train.jsonl``, ``test.jsonl`` and ``corpus.json``.

    corpus.json is written last, so its presence marks a complete corpus. Returns the paths of
    the two manifests as ``{"train": ..., "test": ...}``.
    """
    config = config or DemoCorpusConfig()
    root = Path(out_dir)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    jobs = [(i, config, str(root)) for i in range(config.num_clips)]
    workers = min(config.num_workers, config.num_clips)
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        chunk = max(1, config.num_clips // (workers * 8))
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            rows = list(pool.map(_write_clip, jobs, chunksize=chunk))
    else:
        rows = [_write_clip(job) for job in jobs]
    assign_splits(rows, config.seed, config.test_fraction)
    paths = {}
    for split in ("train", "test"):
        paths[split] = root / f"{split}.jsonl"
        lines = [json.dumps(r) + "\n" for r in rows if r["split"] == split]
        paths[split].write_text("".join(lines), encoding="utf-8")
    summary = _summary(config, rows)
    (root / "corpus.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return paths
