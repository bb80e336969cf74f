"""TransformerAudioEncoder: padding invariance, exact lengths, gradients."""

from __future__ import annotations

import pytest
import torch

from alp_models.audio.transformer import build_transformer_audio_encoder
from alp_models.configs import TransformerAudioEncoderConfig


def _encoder(subsampling: int = 4, **kw):
    cfg = TransformerAudioEncoderConfig(
        input_dim=16, d_model=32, num_layers=2, num_heads=4, ffn_dim=64,
        subsampling=subsampling, **kw,
    )
    return build_transformer_audio_encoder(cfg).eval()


@pytest.mark.parametrize("subsampling", [1, 2, 4])
def test_padding_invariance(subsampling):
    enc = _encoder(subsampling)
    short, long = torch.randn(1, 23, 16), torch.randn(1, 50, 16)
    alone, alone_len = enc(short, torch.tensor([23]))
    batch = torch.zeros(2, 50, 16)
    batch[0, :23], batch[1] = short[0], long[0]
    batch[0, 23:] = 7.0  # padding content must not matter either
    out, lengths = enc(batch, torch.tensor([23, 50]))
    n = int(alone_len[0])
    assert alone.shape[1] == n == int(lengths[0])
    torch.testing.assert_close(out[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert torch.all(out[0, n:] == 0)
    assert out.shape == (2, int(lengths[1]), 32)


@pytest.mark.parametrize("subsampling", [1, 2, 4])
def test_output_lengths_match_shapes(subsampling):
    enc = _encoder(subsampling)
    for t in list(range(1, 20)) + [31, 64, 99, 100, 101, 400]:
        out, lengths = enc(torch.randn(1, t, 16), torch.tensor([t]))
        assert out.shape[1] == int(lengths[0]) == int(enc.output_lengths(torch.tensor([t]))[0])
        assert int(lengths[0]) == -(-t // subsampling)  # ceil(t / subsampling)


def test_zero_length_row_is_finite_and_zero():
    enc = _encoder()
    out, lengths = enc(torch.randn(2, 12, 16), torch.tensor([12, 0]))
    assert int(lengths[1]) == 0
    assert torch.isfinite(out).all() and torch.all(out[1] == 0)


def test_rejects_too_many_positions():
    from alp_core.errors import ConfigError

    enc = _encoder(max_positions=4)
    with pytest.raises(ConfigError, match="max_positions"):
        enc(torch.randn(1, 40, 16), torch.tensor([40]))


def test_backward_reaches_all_parameters():
    enc = _encoder().train()
    out, lengths = enc(torch.randn(2, 30, 16), torch.tensor([30, 17]))
    out.sum().backward()
    assert enc.output_dim == 32
    assert all(p.grad is not None for p in enc.parameters())
