"""Caption decoding speed: greedy with and without the key/value cache, and beam search.

Run: .venv/bin/python -m pytest benchmarks/test_bench_decoding.py --benchmark-only -q

The caption decoder of the embedded default run (configs/default.yaml: d_model 128, 2 layers,
4 heads, FFN 512, max_tokens 64) on a batch of 16 clips of 150 encoder frames (width 128),
in eval mode. Its weights are random, so no row ever emits EOS: every case decodes the full
64 tokens, the worst case of a trained model. ``extra_info["captions_per_s"]`` is the batch
size over the mean time of one ``generate`` call.
"""

from __future__ import annotations

import pytest
import torch

from alp_models.configs import TransformerCaptionDecoderConfig
from alp_models.decoder.transformer import build_transformer_caption_decoder

BATCH, FRAMES, WIDTH, MAX_TOKENS = 16, 150, 128, 64
CASES = {
    "greedy-cache": {"num_beams": 1, "use_cache": True},
    "greedy-no-cache": {"num_beams": 1, "use_cache": False},
    "beam4-cache": {"num_beams": 4, "use_cache": True},
}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    cfg = TransformerCaptionDecoderConfig(d_model=128, num_layers=2, num_heads=4, ffn_dim=512,
                                          max_tokens=MAX_TOKENS)
    decoder = build_transformer_caption_decoder(cfg, memory_dim=WIDTH).eval()
    memory = torch.randn(BATCH, FRAMES, WIDTH)
    lengths = torch.randint(FRAMES // 2, FRAMES + 1, (BATCH,))
    lengths[0] = FRAMES
    return decoder, memory, lengths


@pytest.mark.parametrize("case", list(CASES))
def test_generate(benchmark, setup, case):
    decoder, memory, lengths = setup
    out = benchmark.pedantic(lambda: decoder.generate(memory, lengths, **CASES[case]),
                             rounds=3, warmup_rounds=1, iterations=1)
    assert out.shape == (BATCH, MAX_TOKENS)
    benchmark.extra_info["captions_per_s"] = round(BATCH / benchmark.stats.stats.mean, 1)
    benchmark.extra_info["tokens"] = MAX_TOKENS
