"""model.init_from: a part of the model starts from existing weights, with a report of what
did not fit (missing, unexpected, shape-mismatched keys), or a clear error."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from alp_core import ConfigError
from alp_train.config import resolve_run
from alp_train.recipe import setup_model
from alp_train.task import TrainTask

TINY = {
    "model": {
        "audio_encoder": {"name": "transformer", "d_model": 32, "num_layers": 1, "num_heads": 2,
                          "ffn_dim": 64},
        "text_encoder": {"name": "bert", "hidden_size": 32, "num_layers": 1, "num_heads": 2,
                         "intermediate_size": 64},
        "embed_dim": 16,
    },
}


def _model(seed: int, **model):
    raw = {**TINY, "seed": seed, "model": {**TINY["model"], **model}}
    return setup_model(resolve_run(raw))


def test_audio_encoder_from_a_run_checkpoint_only_touches_the_encoder(tmp_path):
    source, objective = _model(seed=1)
    save_file({k: v.contiguous() for k, v in TrainTask(source, objective).state_dict().items()},
              str(tmp_path / "model.safetensors"))
    fresh, _ = _model(seed=2)
    before_text = {k: v.clone() for k, v in fresh.text_encoder.state_dict().items()}
    target, _ = _model(seed=2, init_from={"path": str(tmp_path), "part": "audio_encoder"})
    for key, value in source.audio_encoder.state_dict().items():
        assert torch.equal(target.audio_encoder.state_dict()[key], value), key
    for key, value in before_text.items():  # the text tower keeps its own seeded init
        assert torch.equal(target.text_encoder.state_dict()[key], value), key
    assert not torch.equal(source.text_encoder.state_dict()["bert.embeddings.word_embeddings"
                                                           ".weight"],
                           target.text_encoder.state_dict()["bert.embeddings.word_embeddings"
                                                            ".weight"])


def test_a_bare_encoder_file_loads_without_prefix(tmp_path):
    source, _ = _model(seed=3)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.audio_encoder.state_dict().items()},
              str(path))
    target, _ = _model(seed=4, init_from={"path": str(path)})
    assert all(torch.equal(target.audio_encoder.state_dict()[k], v)
               for k, v in source.audio_encoder.state_dict().items())


def test_shape_mismatch_names_the_tensor_and_both_shapes(tmp_path):
    wide, _ = _model(seed=5, audio_encoder={**TINY["model"]["audio_encoder"], "ffn_dim": 48})
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in wide.audio_encoder.state_dict().items()}, str(path))
    with pytest.raises(ConfigError) as err:
        _model(seed=6, init_from={"path": str(path)})
    text = str(err.value)
    assert "layers.0.ffn.0.weight" in text and "[64, 32]" in text and "[48, 32]" in text
    # not strict: everything of the right shape loads, the rest keeps its init
    target, _ = _model(seed=6, init_from={"path": str(path), "strict": False})
    assert torch.equal(target.audio_encoder.state_dict()["layers.0.qkv.weight"],
                       wide.audio_encoder.state_dict()["layers.0.qkv.weight"])
    assert target.audio_encoder.state_dict()["layers.0.ffn.0.weight"].shape == (64, 32)


def test_missing_weights_and_wrong_part_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no safetensors weights at"):
        _model(seed=0, init_from={"path": str(tmp_path / "nothing")})
    source, _ = _model(seed=1)
    path = tmp_path / "text.safetensors"
    save_file({k: v.contiguous() for k, v in source.text_encoder.state_dict().items()},
              str(path))
    with pytest.raises(ConfigError, match="holds no tensor of audio_encoder"):
        _model(seed=0, init_from={"path": str(path)})
    with pytest.raises(ConfigError, match="has no caption_decoder"):
        _model(seed=0, init_from={"path": str(path), "part": "caption_decoder"})


def test_seeded_builds_touch_only_the_cpu_generator(monkeypatch):
    """A component's seed goes to the CPU generator alone (torch.manual_seed would reseed
    every GPU too, and fork_rng(devices=[]) restores only the CPU); the weights are those
    that seed gives."""
    from torch import nn

    from alp_models.assembly import component_seed, seeded

    reseeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", reseeded.append)
    state = torch.get_rng_state()
    layer = seeded(5, "audio_encoder", lambda: nn.Linear(4, 3))
    assert reseeded == [] and torch.equal(torch.get_rng_state(), state)
    gen = torch.Generator().manual_seed(component_seed(5, "audio_encoder"))
    bound = 1 / 2  # nn.Linear's kaiming-uniform bound for 4 inputs: 1 / sqrt(4)
    weight = (torch.rand(3, 4, generator=gen) * 2 - 1) * bound
    torch.testing.assert_close(layer.weight.detach(), weight)
