"""BERT text encoders: a small randomly initialised BERT, or the pretrained all-MiniLM-L6-v2.

Both wrap ``transformers.BertModel`` (without its pooler, which contrastive training never
uses and which would leave unused parameters under DDP) and pool the last hidden state by
the [CLS] token or by the mean over real tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from transformers import BertConfig, BertModel

from alp_core.errors import ConfigError
from alp_models.configs import (
    BertTextEncoderConfig,
    MiniLMTextEncoderConfig,
    PretrainedBertConfig,
)
from alp_models.text.tokenizer import CaptionTokenizer, minilm_model_dir

__all__ = ["BertTextEncoder", "build_bert_text_encoder", "build_minilm_text_encoder",
           "build_pretrained_bert_text_encoder"]

Pooling = Literal["cls", "mean"]


class BertTextEncoder(nn.Module):
    """Token ids + attention mask (B, L) → one caption vector (B, hidden_size).

    ``tokenizer`` is a picklable :class:`CaptionTokenizer` for use in DataLoader workers;
    ``frozen`` keeps the BERT weights fixed and its dropout off even in ``train()`` mode.
    """

    def __init__(
        self, bert: BertModel, tokenizer: CaptionTokenizer, pooling: Pooling = "cls",
        frozen: bool = False,
    ) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"text_encoder.pooling: {pooling!r}; accepted: 'cls', 'mean'")
        self.bert, self.tokenizer, self.pooling, self.frozen = bert, tokenizer, pooling, frozen
        self.output_dim: int = bert.config.hidden_size
        if frozen:
            self.bert.requires_grad_(False)
            self.bert.eval()

    def train(self, mode: bool = True) -> BertTextEncoder:
        super().train(mode)
        if self.frozen:
            self.bert.eval()
        return self

    def tokenize(self, captions: list[str]) -> dict[str, Tensor]:
        """Captions → ``input_ids`` and ``attention_mask``, padded and truncated to max_tokens."""
        return self.tokenizer(captions)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def build_bert_text_encoder(config: BertTextEncoderConfig, **_: object) -> BertTextEncoder:
    """A small BERT with random weights sized by ``config``, with a real WordPiece tokenizer."""
    tokenizer = CaptionTokenizer(config.tokenizer, config.max_tokens)
    bert_config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout,
        max_position_embeddings=max(512, config.max_tokens),
        pad_token_id=tokenizer.pad_token_id,
    )
    bert = BertModel(bert_config, add_pooling_layer=False)
    return BertTextEncoder(bert, tokenizer, config.pooling)


def _bert_key(key: str) -> str:
    """A checkpoint key as ``BertModel`` names it: without the ``bert.`` prefix of a
    pre-training checkpoint, and with the old ``LayerNorm.gamma``/``beta`` names of the
    original release (bert-base-uncased on the hub) as ``weight``/``bias``."""
    key = key.removeprefix("bert.")
    if ".LayerNorm." in key or key.startswith("LayerNorm."):
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias")
    return key


def load_bert_weights(bert: BertModel, weights: Path) -> None:
    """Load a ``BertModel`` safetensors file strictly; ignored: the pooler, buffers, and a
    pre-training checkpoint's heads (``cls.*``: masked-LM and next-sentence)."""
    from safetensors.torch import load_file

    state = {
        _bert_key(k): v for k, v in load_file(str(weights)).items()
        if not k.removeprefix("bert.").startswith(("pooler.", "cls."))
        and not k.endswith("position_ids")
    }
    expected = {k for k in bert.state_dict() if not k.endswith("position_ids")}
    missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
    if missing or unexpected:
        raise ConfigError(
            f"{weights}: weights do not match the BERT config (missing: {missing[:5]}, "
            f"unexpected: {unexpected[:5]})"
        )
    with torch.no_grad():
        bert.load_state_dict(state, strict=False)


def build_minilm_text_encoder(config: MiniLMTextEncoderConfig, **_: object) -> BertTextEncoder:
    """The pretrained all-MiniLM-L6-v2 (384-d, 6 layers), loaded offline from its package."""
    model_dir = minilm_model_dir()
    bert = BertModel(BertConfig.from_pretrained(str(model_dir), local_files_only=True),
                     add_pooling_layer=False)
    load_bert_weights(bert, model_dir / "model.safetensors")
    tokenizer = CaptionTokenizer("minilm", config.max_tokens)
    return BertTextEncoder(bert, tokenizer, config.pooling, frozen=config.freeze)


def build_pretrained_bert_text_encoder(config: PretrainedBertConfig, **_: object
                                       ) -> BertTextEncoder:
    """A pretrained BERT from a local folder (e.g. the paper's bert-base-uncased): its
    ``config.json``, ``model.safetensors`` and tokenizer files; nothing is downloaded."""
    folder = Path(config.path).expanduser()
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise ConfigError(f"text_encoder.path: {folder} must hold config.json and "
                          "model.safetensors of a BERT model (and its tokenizer files)")
    bert = BertModel(BertConfig.from_pretrained(str(folder), local_files_only=True),
                     add_pooling_layer=False)
    load_bert_weights(bert, weights)
    tokenizer = CaptionTokenizer(str(folder), config.max_tokens)
    return BertTextEncoder(bert, tokenizer, config.pooling, frozen=config.freeze)
