"""The HEAR 2021 API over a save_pretrained folder, checked as hear-validator checks it.

hearvalidator imports tensorflow at module level, so its checks are restated here one by
one; each helper is named after the validator's own method (hearvalidator 2021.0.2,
``ValidateModel``), and ``test_exported_module_passes_the_validator_sequence`` runs them in
the validator's order against a module written by ``export_hear_module``.
"""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from tests.shared import TINY_ALP_MODEL

from alp_core import ConfigError
from alp_eval import hear
from alp_eval.pretrained import PretrainedALP

MODEL = TINY_ALP_MODEL
ACCEPTABLE_SAMPLE_RATE = [16000, 22050, 44100, 48000]  # ValidateModel.ACCEPTABLE_SAMPLE_RATE


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pre = PretrainedALP.from_config({"model": MODEL}, seed=1)
    return pre.save_pretrained(tmp_path_factory.mktemp("hear") / "model")


@pytest.fixture(scope="module")
def model(folder):
    return hear.load_model(str(folder))


def _noise(n: int, seconds: float, rate: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, int(seconds * rate)), generator=gen) * 2 - 1.0


# -- the validator's checks ------------------------------------------------------------------
def check_load_model(module, path):
    """``load_model(path)`` returns a torch.nn.Module, which the validator moves with .to()."""
    assert hasattr(module, "load_model")
    loaded = module.load_model(path) if path else module.load_model()
    assert isinstance(loaded, torch.nn.Module)
    loaded.to("cpu")
    return loaded


def check_sample_rate(model):
    assert hasattr(model, "sample_rate")
    assert model.sample_rate in ACCEPTABLE_SAMPLE_RATE


def check_embedding_size(model):
    assert hasattr(model, "scene_embedding_size")
    assert isinstance(model.scene_embedding_size, int)
    assert hasattr(model, "timestamp_embedding_size")
    assert isinstance(model.timestamp_embedding_size, int)


def torch_timestamp_embeddings(module, model):
    num_audio, length = 16, 2.0
    audio_batch = _noise(num_audio, length, model.sample_rate)
    embeddings, timestamps = module.get_timestamp_embeddings(audio_batch, model)
    assert embeddings.dtype == torch.float32
    assert embeddings.shape[0] == num_audio
    assert embeddings.shape[:2] == timestamps.shape
    assert embeddings.shape[2] == model.timestamp_embedding_size
    timestamp_diff = torch.diff(timestamps)
    average_diff = torch.mean(timestamp_diff.float())
    assert average_diff <= 50.0  # the validator only warns above 50 ms
    assert torch.all(torch.abs(timestamp_diff - average_diff) < 1e-3)


def torch_scene_embeddings(module, model):
    num_audio, length = 8, 3.74
    audio_batch = _noise(num_audio, length, model.sample_rate)
    embeddings = module.get_scene_embeddings(audio_batch, model)
    assert embeddings.dtype == torch.float32
    assert embeddings.shape[0] == num_audio
    assert embeddings.shape[1] == model.scene_embedding_size


def test_exported_module_passes_the_validator_sequence(folder, tmp_path, monkeypatch):
    package = hear.export_hear_module(folder, tmp_path / "pkgs", "alp_hear_tiny")
    assert (package / "__init__.py").is_file()
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    try:
        module = importlib.import_module("alp_hear_tiny")  # import_model
        for path in ("", str(folder)):  # bound default, and --model PATH
            loaded = check_load_model(module, path)
            check_sample_rate(loaded)
            check_embedding_size(loaded)
            torch_timestamp_embeddings(module, loaded)
            torch_scene_embeddings(module, loaded)
    finally:
        sys.modules.pop("alp_hear_tiny", None)


def test_bundled_export_carries_the_model(folder, tmp_path, monkeypatch):
    package = hear.export_hear_module(folder, tmp_path / "pkgs", "alp_hear_bundled", bundle=True)
    assert (package / "model" / "model.safetensors").is_file()
    monkeypatch.syspath_prepend(str(tmp_path / "pkgs"))
    try:
        module = importlib.import_module("alp_hear_bundled")
        loaded = check_load_model(module, "")
        ref = PretrainedALP.from_pretrained(folder)
        assert loaded.pretrained.fingerprint == ref.fingerprint
    finally:
        sys.modules.pop("alp_hear_bundled", None)
    with pytest.raises(ConfigError, match="not a Python identifier"):
        hear.export_hear_module(folder, tmp_path, "my-module")
    with pytest.raises(ConfigError, match="expected a save_pretrained folder"):
        hear.export_hear_module(tmp_path, tmp_path, "elsewhere")


# -- beyond the validator --------------------------------------------------------------------
def test_attributes_are_plain_ints(model, folder):
    for name in ("sample_rate", "scene_embedding_size", "timestamp_embedding_size"):
        assert type(getattr(model, name)) is int, name
    assert (model.sample_rate, model.scene_embedding_size, model.timestamp_embedding_size) \
        == (16000, 32, 32)  # encoder space by default
    joint = hear.load_model(str(folder), space="joint")
    assert joint.scene_embedding_size == 24
    out = hear.get_scene_embeddings(_noise(2, 1.0, 16000), joint)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2))


def test_load_model_errors(folder):
    with pytest.raises(ConfigError, match="needs model_file_path"):
        hear.load_model()
    with pytest.raises(ConfigError, match=r"unknown options \['colour'\]"):
        hear.load_model(str(folder), colour="red")


def test_scene_embeddings_are_embed_audio_and_batch_independent(model):
    audio = _noise(5, 3.74, 16000, seed=3)
    out = hear.get_scene_embeddings(audio, model)
    assert isinstance(out, torch.Tensor) and out.device == audio.device
    assert out.dtype == torch.float32 and not out.requires_grad
    ref = model.pretrained.embed_audio(list(audio), space="encoder")
    torch.testing.assert_close(out, ref, atol=0, rtol=0)
    for rows in ([0], [1, 2, 3]):  # batches of other sizes
        torch.testing.assert_close(hear.get_scene_embeddings(audio[rows], model), out[rows],
                                   atol=1e-6, rtol=0)
    assert hear.get_scene_embeddings(audio[:0], model).shape == (0, 32)


def test_timestamp_embeddings_are_the_encoder_frames(model):
    audio = _noise(3, 1.0, 16000, seed=4)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    frames, lengths, hop = model.pretrained.frames(list(audio))
    torch.testing.assert_close(emb, frames, atol=0, rtol=0)
    assert emb.device == audio.device and ts.device == audio.device
    assert ts.dtype == torch.float32 and not emb.requires_grad and not ts.requires_grad
    one, _ = hear.get_timestamp_embeddings(audio[1:2], model)
    torch.testing.assert_close(one[0], emb[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("seconds", [1.0, 2.5])
def test_timestamps_are_frame_centres_within_the_audio(model, seconds):
    audio = _noise(2, seconds, 16000, seed=5)
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    hop_ms = 40.0  # 10 ms fbank hop, 4x subsampling
    n = int(np.ceil(np.ceil((1 + (audio.shape[1] - 400) // 160) / 2) / 2))
    assert emb.shape == (2, n, 32) and ts.shape == (2, n)
    want = (torch.arange(n, dtype=torch.float64) + 0.5) * hop_ms
    torch.testing.assert_close(ts[0], want.float())
    assert torch.equal(ts[0], ts[1])
    assert ts[0, 0] == hop_ms / 2 and ts[0, -1] <= seconds * 1000
    assert ts[0, -1] >= seconds * 1000 - 2 * hop_ms
    assert torch.all(torch.diff(ts) > 0)


def test_outputs_are_deterministic_in_eval_and_train_mode(model):
    audio = _noise(2, 1.3, 16000, seed=6)
    first = hear.get_timestamp_embeddings(audio, model)[0]
    model.train()  # dropout would show; the functions run the encoder in eval mode
    try:
        again = hear.get_timestamp_embeddings(audio, model)[0]
        scene = hear.get_scene_embeddings(audio, model)
    finally:
        model.eval()
    assert torch.equal(first, again)
    assert torch.equal(scene, hear.get_scene_embeddings(audio, model))
    assert model.training is False


def test_short_audio_gives_one_frame(model):
    emb, ts = hear.get_timestamp_embeddings(_noise(1, 0.01, 16000), model)
    assert emb.shape == (1, 1, 32) and ts.tolist() == [[20.0]]
