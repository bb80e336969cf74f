"""AudioTextModel: shapes, unit norms, pooling order, gradients on both towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alp_models.audio.transformer import build_transformer_audio_encoder
from alp_models.configs import (
    BertTextEncoderConfig,
    ProjectionConfig,
    TransformerAudioEncoderConfig,
)
from alp_models.pooling import masked_mean
from alp_models.text.bert import build_bert_text_encoder
from alp_models.two_tower import AudioTextModel


@pytest.fixture
def model():
    audio = build_transformer_audio_encoder(TransformerAudioEncoderConfig(
        input_dim=80, d_model=32, num_layers=1, num_heads=2, ffn_dim=64,
    ))
    text = build_bert_text_encoder(BertTextEncoderConfig(
        hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_tokens=12,
    ))
    return AudioTextModel(audio, text, ProjectionConfig(embed_dim=24, hidden_dim=40))


def _batch(model):
    lengths = torch.tensor([60, 33, 7])
    features = torch.randn(3, 60, 80) * (torch.arange(60)[None, :, None] < lengths[:, None, None])
    tokens = model.tokenizer(["a dog barks", "soft piano", "a man speaks calmly in a big hall"])
    return {"features": features, "feature_lengths": lengths,
            "feature_mask": torch.arange(60)[None] < lengths[:, None], **tokens}


def test_forward_shapes_and_unit_norm(model):
    model.eval()
    out = model(_batch(model))
    assert set(out) == {"audio_embeds", "text_embeds", "audio_frames", "audio_lengths"}
    assert out["audio_embeds"].shape == out["text_embeds"].shape == (3, 24)
    assert out["audio_frames"].shape == (3, 15, 32)
    assert out["audio_lengths"].tolist() == [15, 9, 2]
    for key in ("audio_embeds", "text_embeds"):
        torch.testing.assert_close(out[key].norm(dim=-1), torch.ones(3))


def test_audio_is_projected_per_frame_then_pooled(model):
    model.eval()
    batch = _batch(model)
    with torch.no_grad():
        frames, lengths = model.encode_audio(batch["features"], batch["feature_lengths"])
        want = F.normalize(masked_mean(model.audio_proj(frames), lengths), dim=-1)
        got = model.embed_audio(batch["features"], batch["feature_lengths"])
        pooled = model.pooled_audio(batch["features"], batch["feature_lengths"])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(pooled, masked_mean(frames, lengths))
    assert pooled.shape == (3, 32)


def test_backward_reaches_both_towers(model):
    model.train()
    out = model(_batch(model))
    logits = out["audio_embeds"] @ out["text_embeds"].T / 0.07
    target = torch.arange(3)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    loss.backward()
    for name in ("audio_encoder", "text_encoder", "audio_proj", "text_proj"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_missing_batch_key(model):
    with pytest.raises(KeyError, match="input_ids"):
        model({"features": torch.zeros(1, 8, 80), "feature_lengths": torch.tensor([8])})


def test_model_caption_path_causal_and_parallel_rows_see_what_they_should():
    """Through AudioTextModel.forward: in a causal row a position's logits ignore later
    tokens; in a parallel (CapPa) row every position sees every input."""
    from alp_models.configs import TransformerCaptionDecoderConfig
    from alp_models.decoder.transformer import build_transformer_caption_decoder

    torch.manual_seed(0)
    audio = build_transformer_audio_encoder(TransformerAudioEncoderConfig(
        d_model=16, num_layers=1, num_heads=2, ffn_dim=32, dropout=0.0))
    decoder = build_transformer_caption_decoder(TransformerCaptionDecoderConfig(
        d_model=16, num_layers=2, num_heads=2, ffn_dim=32, dropout=0.0, max_tokens=16),
        memory_dim=16)
    model = AudioTextModel(audio, None, caption_decoder=decoder).eval()
    feats, lengths = torch.randn(2, 60, 80), torch.tensor([60, 60])
    ids = torch.randint(5, 1000, (2, 6))
    changed = ids.clone()
    changed[:, 4] = 1001  # alter the token at position 4 only
    mask = torch.ones(2, 6, dtype=torch.bool)
    causal = torch.tensor([True, False])

    def logits(tokens):
        return model({"features": feats, "feature_lengths": lengths,
                      "decoder_input_ids": tokens, "decoder_attention_mask": mask,
                      "decoder_causal": causal})["caption_logits"]

    a, b = logits(ids), logits(changed)
    assert torch.allclose(a[0, :4], b[0, :4], atol=1e-6)  # causal: positions < 4 blind to it
    assert not torch.allclose(a[0, 4:], b[0, 4:], atol=1e-6)
    assert not torch.allclose(a[1, :4], b[1, :4], atol=1e-6)  # parallel: everyone sees it


def test_pooled_and_embedded_audio_in_one_encoder_pass(model):
    """What extraction for evaluation calls: both views from one pass of the encoder, equal
    to pooled_audio and embed_audio called alone (which run the encoder once each)."""
    model.eval()
    batch = _batch(model)
    calls = []
    handle = model.audio_encoder.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        pooled, joint = model.pooled_and_embedded_audio(batch["features"],
                                                        batch["feature_lengths"])
        assert len(calls) == 1
        torch.testing.assert_close(pooled, model.pooled_audio(batch["features"],
                                                              batch["feature_lengths"]))
        torch.testing.assert_close(joint, model.embed_audio(batch["features"],
                                                            batch["feature_lengths"]))
    handle.remove()
    assert len(calls) == 3
