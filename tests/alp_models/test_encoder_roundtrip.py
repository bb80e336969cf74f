"""Every registered audio encoder: save -> load round-trips bit-exactly, and the bad inputs
the contract names (wrong feature dim, a zero-length clip) behave as documented."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from alp_core import new_plugin_manager

TINY = {
    "transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "zipformer": {"preset": "tiny"},
    "conformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "patch-transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "hf-audio": {"model_type": "ast", "config": {"hidden_size": 16, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2,
                                                 "intermediate_size": 32, "max_length": 256}},
}


def _build(name: str, seed: int):
    torch.manual_seed(seed)
    return new_plugin_manager().get("audio_encoder", name).build(TINY[name]).eval()


@pytest.mark.parametrize("name", list(TINY))
def test_save_load_round_trip_is_bit_exact(name, tmp_path):
    source, target = _build(name, 0), _build(name, 1)
    x, lengths = torch.randn(2, 120, 80), torch.tensor([120, 75])
    before = target(x, lengths)[0]
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target.load_state_dict(load_file(str(path)))
    want, got = source(x, lengths), target(x, lengths)
    assert not torch.equal(before, want[0])  # the seeds differ: loading is what aligns them
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("name", list(TINY))
def test_wrong_feature_dim_names_the_expected_shape(name):
    encoder = _build(name, 0)
    with pytest.raises(ValueError, match="80"):
        encoder(torch.randn(2, 50, 64), torch.tensor([50, 50]))


@pytest.mark.parametrize("name", ["transformer", "zipformer", "conformer", "patch-transformer"])
def test_zero_length_clip_in_a_batch_gives_finite_zero_frames(name):
    encoder = _build(name, 0)
    frames, lengths = encoder(torch.randn(2, 120, 80), torch.tensor([120, 0]))
    assert int(lengths[1]) == 0 and torch.isfinite(frames).all()
    assert torch.equal(frames[1], torch.zeros_like(frames[1]))
