"""The audio-encoder contract in code: the model is assembled only from encoders that keep
it, and an encoder expecting other feature bins than the filterbank gives is a clear error."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alp_core import ConfigError
from alp_models.audio.protocol import AudioEncoder, check_audio_encoder
from alp_models.configs import ProjectionConfig

#: every registered audio encoder at a tiny size
TINY_ENCODERS = {
    "transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "zipformer": {"preset": "tiny"},
    "conformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
    "patch-transformer": {"d_model": 16, "num_layers": 1, "num_heads": 2, "ffn_dim": 32},
}


class NoDim(nn.Module):
    def forward(self, features, lengths):
        return features, lengths


class Good(NoDim):
    output_dim = 80
    input_dim = 80


def test_contract_is_checked_at_assembly():
    from alp_models.assembly import build_audio_text_model
    from alp_models.configs import BertTextEncoderConfig
    from alp_models.text.bert import build_bert_text_encoder

    text = build_bert_text_encoder(BertTextEncoderConfig(hidden_size=16, num_layers=1,
                                                         num_heads=2, intermediate_size=32))
    kw = dict(seed=0, text_encoder=text, caption_decoder=None,
              projection=ProjectionConfig(embed_dim=8), needs=frozenset({"text_embeds"}))
    model = build_audio_text_model(audio_encoder=Good(), input_dim=80, **kw)
    assert isinstance(model.audio_encoder, AudioEncoder)
    with pytest.raises(ConfigError, match="lacks"):
        build_audio_text_model(audio_encoder=NoDim(), input_dim=80, **kw)
    with pytest.raises(ConfigError, match="expects 80 feature bins .* gives 64"):
        build_audio_text_model(audio_encoder=Good(), input_dim=64, **kw)


def test_every_registered_encoder_reports_dims_and_frame_rate():
    from alp_core import new_plugin_manager

    pm = new_plugin_manager()
    for name, options in TINY_ENCODERS.items():
        encoder = pm.get("audio_encoder", name).build(options)
        check_audio_encoder(encoder, name, 80)
        frames, lengths = encoder.eval()(torch.randn(2, 200, 80), torch.tensor([200, 120]))
        assert frames.shape[-1] == encoder.output_dim
        assert encoder.frame_rate == pytest.approx(100 * frames.shape[1] / 200, rel=0.05), name


def test_hf_encoder_with_other_mel_bins_is_refused_before_training():
    from alp_train.config import resolve_run
    from alp_train.recipe import setup_model

    raw = {"model": {"audio_encoder": {"name": "hf-audio", "model_type": "ast",
                                       "config": {"num_mel_bins": 128, "hidden_size": 16,
                                                  "num_hidden_layers": 1,
                                                  "num_attention_heads": 2,
                                                  "intermediate_size": 32,
                                                  "max_length": 128}}}}
    with pytest.raises(ConfigError, match="expects 128 feature bins"):
        setup_model(resolve_run(raw))


def test_hf_encoder_mel_bins_are_checked_before_any_work(tmp_path):
    """`alp run --check` already knows what the HF model will expect (override, folder)."""
    import json

    from alp_train.checks import check_run
    from alp_train.config import resolve_run

    raw = {"model": {"audio_encoder": {"name": "hf-audio", "model_type": "ast",
                                       "config": {"num_mel_bins": 128}}}}
    with pytest.raises(ConfigError, match="input_dim is 128 but data.fbank.num_mel_bins is 80"):
        check_run(resolve_run(raw))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "whisper",
                                                      "num_mel_bins": 64}))
    raw = {"model": {"audio_encoder": {"name": "hf-audio", "path": str(tmp_path)}}}
    with pytest.raises(ConfigError, match="input_dim is 64"):
        check_run(resolve_run(raw))


def test_lengths_may_come_on_another_device_than_the_features():
    """Features on the training device with lengths left on the CPU (as a user's own loop
    may hand them): every built-in fbank encoder moves the lengths, none mixes devices (the
    hf-audio wrapper does the same, untested here: transformers' mask code cannot run on
    meta tensors). The meta device stands in for a GPU (a mix of devices fails there as it
    would on CUDA)."""
    from alp_core import new_plugin_manager

    pm = new_plugin_manager()
    for name, options in TINY_ENCODERS.items():
        encoder = pm.get("audio_encoder", name).build(options).eval().to("meta")
        frames, lengths = encoder(torch.empty(2, 200, 80, device="meta"),
                                  torch.tensor([200, 120]))
        assert frames.device.type == "meta" and lengths.device.type == "meta", name
