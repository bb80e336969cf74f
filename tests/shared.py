"""Configs and helpers shared by tests in several folders (imported as ``tests.shared``)."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

#: The smallest audio-text ALP model worth testing: a one-layer Transformer audio tower, a
#: one-layer BERT text tower with the real MiniLM tokenizer, a 24-d joint space.
TINY_ALP_MODEL = {
    "audio_encoder": {"name": "transformer", "d_model": 32, "num_layers": 1, "num_heads": 2,
                      "ffn_dim": 64},
    "text_encoder": {"name": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                     "intermediate_size": 64, "tokenizer": "minilm"},
    "embed_dim": 24,
}


def write_table(path: Path, header: list[str] | None, rows: list, delimiter: str = ",") -> None:
    """A CSV/TSV file (parent folders made) with an optional header row, as corpora ship."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        if header:
            writer.writerow(header)
        writer.writerows(rows)


def write_flac_clips(folder: Path, count: int, *, seed: int, prefix: str,
                     seconds: tuple[float, float], resampled_every: int,
                     captions: Callable[[int, str], tuple[str, ...]], tone: bool = False
                     ) -> list:
    """``count`` mono FLACs ``{prefix}{i:02d}.flac`` of uniform random length in ``seconds``
    (every ``resampled_every``-th at 22.05 kHz, the rest at 16 kHz): noise, or a random tone
    plus a little noise with ``tone``; returns their manifest entries with
    ``captions(i, clip_id)``."""
    import soundfile as sf

    from alp_data.manifest import ManifestEntry

    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        rate = 22050 if i % resampled_every == resampled_every - 1 else 16000
        size = int(float(rng.uniform(*seconds)) * rate)
        if tone:
            wave = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * np.arange(size) / rate)
            wave = wave + 0.05 * rng.standard_normal(size)
        else:
            wave = 0.2 * rng.standard_normal(size)
        ident = f"{prefix}{i:02d}"
        path = folder / f"{ident}.flac"
        sf.write(path, wave.astype(np.float32), rate)
        entries.append(ManifestEntry(ident, str(path), size / rate, rate, captions(i, ident)))
    return entries
