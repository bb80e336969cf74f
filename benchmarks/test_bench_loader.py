"""Data-loader throughput on the embedded default: clips/s and audio seconds/s by workers.

Run: make bench   (or: .venv/bin/python -m pytest benchmarks -k loader --benchmark-only)
"""

from __future__ import annotations

import pytest

from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset, AudioConfig
from alp_data.features import Fbank, SpecAugment
from alp_data.loader import build_loader, set_loader_epoch
from alp_models.text.tokenizer import CaptionTokenizer, minilm_model_dir


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_loader_epoch(benchmark, demo_corpus, num_workers):
    dataset = AudioCaptionDataset(demo_corpus, audio=AudioConfig(max_seconds=3.0), fbank=Fbank(),
                                  train=True, spec_augment=SpecAugment())
    loader = build_loader(dataset, batch_size=32, shuffle=True, num_workers=num_workers,
                          collator=Collator(CaptionTokenizer(str(minilm_model_dir()))))
    epoch = iter(range(1000))

    def one_epoch() -> tuple[int, float]:
        set_loader_epoch(loader, next(epoch))
        clips, frames = 0, 0
        for batch in loader:
            clips += len(batch["ids"])
            frames += int(batch["feature_lengths"].sum())
        return clips, frames / 100.0  # 10 ms hop -> seconds of audio

    clips, seconds = benchmark.pedantic(one_epoch, rounds=3, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    benchmark.extra_info.update(clips_per_s=round(clips / mean, 1),
                                audio_seconds_per_s=round(seconds / mean, 1),
                                num_workers=num_workers)
