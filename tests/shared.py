"""Configs and helpers shared by tests in several folders (imported as ``tests.shared``)."""

from __future__ import annotations

import csv
from pathlib import Path

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
