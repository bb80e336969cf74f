"""The conformer, patch-transformer and hf-audio (AST, Whisper) encoders.

Every encoder is built through the plugin manager on a tiny config and checked for exact
lengths, padding invariance (eval mode, atol 1e-5), zeroed padding, a bit-exact safetensors
round trip, input errors and gradients. Reference checks: the masked Conformer layer equals
torchaudio's without padding, the patch layout equals patches sliced by hand, and AST's
padding mask equals running AST on the valid patches only.
"""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from alp_core import new_plugin_manager
from alp_core.errors import ConfigError

F_BINS = 16
AST_CFG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_length=100, num_mel_bins=F_BINS, patch_size=4, frequency_stride=4,
               time_stride=3)
WHISPER_CFG = dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                   max_source_positions=50, num_mel_bins=F_BINS)
PATCH_CFG = dict(input_dim=F_BINS, patch_time=4, patch_freq=8, stride_time=3, stride_freq=4,
                 d_model=32, num_layers=2, num_heads=4, ffn_dim=64, max_time_patches=64)
# id: (registered name, config, frame rate, expected output length of a T-frame clip)
CASES = {
    "conformer": ("conformer", dict(input_dim=F_BINS, d_model=32, num_layers=2, num_heads=4,
                                    ffn_dim=64, depthwise_conv_kernel_size=7, subsampling=4),
                  25.0, lambda t: math.ceil(t / 4)),
    "conformer-s1": ("conformer", dict(input_dim=F_BINS, d_model=32, num_layers=1, num_heads=4,
                                       ffn_dim=64, depthwise_conv_kernel_size=5, subsampling=1),
                     100.0, lambda t: t),
    "patch-learned": ("patch-transformer", PATCH_CFG, 100 / 3, lambda t: math.ceil(t / 3)),
    "patch-sinusoidal": ("patch-transformer", {**PATCH_CFG, "positions": "sinusoidal"},
                         100 / 3, lambda t: math.ceil(t / 3)),
    "hf-ast": ("hf-audio", dict(model_type="ast", config=AST_CFG), 100 / 3,
               lambda t: min(math.ceil(t / 3), 33)),  # (100 - 4) // 3 + 1 columns
    "hf-whisper": ("hf-audio", dict(model_type="whisper", config=WHISPER_CFG), 50.0,
                   lambda t: min(math.ceil(t / 2), 50)),
}
IDS = list(CASES)


def _build(case: str, seed: int = 0, **extra):
    name, cfg, _, _ = CASES[case]
    torch.manual_seed(seed)
    return new_plugin_manager().get("audio_encoder", name).build({**cfg, **extra}).eval()


@pytest.fixture(scope="module")
def encoders():
    return {case: _build(case) for case in IDS}


@pytest.mark.parametrize("case", IDS)
def test_shapes_lengths_and_rate(encoders, case):
    enc, (_, _, rate, expected) = encoders[case], CASES[case]
    assert enc.output_dim == 32 and enc.frame_rate == pytest.approx(rate)
    for t in (1, 2, 3, 4, 5, 9, 23, 50, 99, 130):
        with torch.no_grad():
            out, lengths = enc(torch.randn(1, t, F_BINS), torch.tensor([t]))
        n = expected(t)
        assert out.shape == (1, n, 32) and lengths.tolist() == [n]
        assert int(enc.output_lengths(torch.tensor([t]))[0]) == n


@pytest.mark.parametrize("case", IDS)
def test_padding_invariance_and_zero_padding(encoders, case):
    enc = encoders[case]
    long = torch.randn(1, 50, F_BINS)
    for short_len in (1, 7, 23, 49):
        short = torch.randn(1, short_len, F_BINS)
        batch = 7.0 + 3.0 * torch.randn(2, 50, F_BINS)  # padding content must not matter
        batch[0, :short_len], batch[1] = short[0], long[0]
        with torch.no_grad():
            alone, alone_len = enc(short, torch.tensor([short_len]))
            out, lengths = enc(batch, torch.tensor([short_len, 50]))
            long_alone, _ = enc(long, torch.tensor([50]))
        n = int(alone_len[0])
        assert int(lengths[0]) == n and alone.shape[1] == n
        torch.testing.assert_close(out[0, :n], alone[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[1], long_alone[0], atol=1e-5, rtol=1e-5)
        assert torch.all(out[0, n:] == 0)


@pytest.mark.parametrize("case", IDS)
def test_safetensors_round_trip_is_bit_exact(encoders, case, tmp_path):
    enc, x, lengths = encoders[case], torch.randn(2, 40, F_BINS), torch.tensor([40, 17])
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, tmp_path / "enc.st")
    fresh = _build(case, seed=1)
    with torch.no_grad():
        expected, _ = enc(x, lengths)
        assert not torch.equal(fresh(x, lengths)[0], expected)  # different random weights
        fresh.load_state_dict(load_file(tmp_path / "enc.st"))
        assert torch.equal(fresh(x, lengths)[0], expected)


@pytest.mark.parametrize("case", IDS)
def test_bad_inputs_and_zero_lengths(encoders, case):
    enc = encoders[case]
    with pytest.raises(ValueError, match=rf"\(B, T, {F_BINS}\)"):
        enc(torch.randn(2, 30, F_BINS + 1), torch.tensor([30, 30]))
    with pytest.raises(ValueError, match=rf"\(B, T, {F_BINS}\)"):
        enc(torch.randn(30, F_BINS), torch.tensor([30]))
    with pytest.raises(ValueError, match="lengths"):
        enc(torch.randn(2, 30, F_BINS), torch.tensor([30]))
    with torch.no_grad():
        out, lengths = enc(torch.randn(2, 20, F_BINS), torch.tensor([20, 0]))
        assert lengths[1] == 0 and torch.isfinite(out).all() and torch.all(out[1] == 0)
        empty, lengths = enc(torch.randn(2, 0, F_BINS), torch.tensor([0, 0]))
    assert empty.shape == (2, 0, 32) and lengths.tolist() == [0, 0]


@pytest.mark.parametrize("case", IDS)
def test_gradient_reaches_every_trainable_parameter(case):
    enc = _build(case).train()
    out, _ = enc(torch.randn(2, 30, F_BINS), torch.tensor([30, 17]))
    (out * torch.randn_like(out)).sum().backward()
    params = dict(enc.named_parameters())
    frozen = {n for n, p in params.items() if not p.requires_grad}
    assert frozen == ({"model.embed_positions.weight"} if case == "hf-whisper" else set())
    missing = [n for n, p in params.items()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing


def test_masked_conformer_layer_equals_torchaudio_without_padding(encoders):
    from alp_models.audio.conformer import masked_conformer_layer

    layer = encoders["conformer"].conformer.conformer_layers[0]
    x, valid = torch.randn(2, 12, 32), torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        ours = masked_conformer_layer(layer, x, ~valid, valid)
        theirs = layer(x.transpose(0, 1), None).transpose(0, 1)
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)


def test_patch_layout_matches_hand_sliced_patches():
    enc = _build("patch-learned", num_layers=0, input_norm="none")
    x = torch.randn(1, 11, F_BINS)  # ceil(11 / 3) = 4 columns; the last reads frames 9..12
    padded = torch.cat([x, torch.zeros(1, 2, F_BINS)], dim=1)
    w, b = enc.patch_embed.weight[:, 0].flatten(1), enc.patch_embed.bias
    cols = []
    for j in range(4):
        rows = [padded[0, 3 * j:3 * j + 4, 4 * i:4 * i + 8].flatten() @ w.T + b
                + enc.time_positions[j] + enc.freq_positions[i] for i in range(3)]
        cols.append(torch.stack([enc.final_norm(r) for r in rows]).mean(0))
    with torch.no_grad():
        out, _ = enc(x, torch.tensor([11]))
    torch.testing.assert_close(out[0], torch.stack(cols).detach(), atol=1e-5, rtol=1e-5)


def test_patch_transformer_limits_and_config_errors():
    from alp_models.configs import PatchTransformerConfig

    enc = _build("patch-learned", max_time_patches=4)
    with pytest.raises(ConfigError, match="max_time_patches"):
        enc(torch.randn(1, 40, F_BINS), torch.tensor([40]))
    with pytest.raises(ValidationError, match="patch_freq"):
        PatchTransformerConfig(input_dim=8, patch_freq=16)


def test_ast_padding_mask_equals_running_on_valid_patches_only(encoders):
    enc = encoders["hf-ast"]
    length, model = 20, enc.model  # 7 valid columns of 33, 4 frequency patches each
    x = torch.cat([torch.randn(1, length, F_BINS), torch.zeros(1, 80, F_BINS)], dim=1)
    with torch.no_grad():
        out, lengths = enc(x[:, :length], torch.tensor([length]))
        tokens = model.embeddings(x)
        keep = [0, 1] + [2 + f * 33 + t for f in range(4) for t in range(7)]
        h = tokens[:, keep]
        for layer in model.layers:
            h = layer(h, None)
        ref = model.layernorm(h)[:, 2:].view(1, 4, 7, 32).mean(1)
        unmasked, _ = _build("hf-ast", mask_padding=False)(x[:, :length], torch.tensor([length]))
    assert lengths.tolist() == [7]
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unmasked, out, atol=1e-3)


def test_hf_freeze_and_refusals():
    enc = _build("hf-whisper", freeze=True).train()
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.model.training
    pm = new_plugin_manager()
    for kind in ("wavlm", "hubert"):
        with pytest.raises(ConfigError, match="waveforms"):
            pm.get("audio_encoder", "hf-audio").build({"model_type": kind})
    with pytest.raises(ConfigError, match="hidden_sise"):
        pm.get("audio_encoder", "hf-audio").build({"model_type": "ast",
                                                   "config": {"hidden_sise": 8}})
    with pytest.raises(ConfigError, match="exactly one"):
        pm.get("audio_encoder", "hf-audio").build({"model_type": "ast", "path": "/x"})
    with pytest.raises(ConfigError, match="not a local folder"):
        pm.get("audio_encoder", "hf-audio").build({"path": "/nonexistent/model"})


@pytest.mark.parametrize("case", ["hf-ast", "hf-whisper"])
def test_hf_loads_a_local_pretrained_folder(encoders, case, tmp_path):
    from transformers import WhisperConfig, WhisperModel

    if case == "hf-ast":
        encoders[case].model.save_pretrained(tmp_path)
        reference = encoders[case]
    else:
        torch.manual_seed(2)
        full = WhisperModel(WhisperConfig(**WHISPER_CFG, decoder_layers=1, decoder_ffn_dim=64,
                                          decoder_attention_heads=4)).eval()
        full.save_pretrained(tmp_path)
        reference = _build(case)
        reference.load_state_dict({f"model.{k}": v for k, v in
                                   full.get_encoder().state_dict().items()})
    loaded = new_plugin_manager().get("audio_encoder", "hf-audio").build(
        {"path": str(tmp_path)}).eval()
    x, lengths = torch.randn(2, 30, F_BINS), torch.tensor([30, 11])
    with torch.no_grad():
        assert torch.equal(loaded(x, lengths)[0], reference(x, lengths)[0])


def test_hf_checkpoint_saved_in_half_precision_loads_as_float32(encoders, tmp_path):
    """Hub checkpoints often ship fp16 weights; loaded as such they would meet the float32
    features in the first layer. They load as float32 (autocast gives half precision)."""
    import copy

    half = copy.deepcopy(encoders["hf-ast"].model).half()
    half.save_pretrained(tmp_path)
    loaded = new_plugin_manager().get("audio_encoder", "hf-audio").build(
        {"path": str(tmp_path)}).eval()
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    x, lengths = torch.randn(2, 30, F_BINS), torch.tensor([30, 11])
    with torch.no_grad():
        frames, _ = loaded(x, lengths)
    assert frames.dtype == torch.float32 and torch.isfinite(frames).all()
