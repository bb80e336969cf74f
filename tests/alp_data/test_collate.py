"""Collation: exact padding, lengths and masks; real tokenizer; all-bad batches."""

from __future__ import annotations

import pytest
import torch

from alp_data.collate import Collator
from alp_data.dataset import BadClip


def _item(i, frames, caption, bins=80):
    return {"index": i, "id": f"c{i}", "features": torch.randn(frames, bins) + 5.0,
            "num_frames": frames, "caption": caption, "captions": (caption,),
            "labels": {"i": str(i)}}


def test_padding_lengths_and_mask_are_exact(tokenizer):
    bad = BadClip(index=7, id="bad", path="/x/bad.flac", error="cannot decode")
    items = [_item(0, 5, "a dog barks"), bad, _item(1, 9, "rain falls on a tin roof loudly"),
             _item(2, 1, "hum")]
    batch = Collator(tokenizer)(items)
    assert batch["ids"] == ["c0", "c1", "c2"] and batch["indices"] == [0, 1, 2]
    assert batch["skipped"] == [bad]
    feats, lengths, mask = batch["features"], batch["feature_lengths"], batch["feature_mask"]
    assert feats.shape == (3, 9, 80) and feats.dtype == torch.float32
    assert lengths.tolist() == [5, 9, 1] and lengths.dtype == torch.int64
    assert mask.dtype == torch.bool and mask.sum(1).tolist() == [5, 9, 1]
    for row, item in enumerate(i for i in items if not isinstance(i, BadClip)):
        n = item["num_frames"]
        assert torch.equal(feats[row, :n], item["features"])
        assert feats[row, n:].abs().sum() == 0
        assert mask[row, :n].all() and not mask[row, n:].any()
    assert batch["captions"] == ["a dog barks", "rain falls on a tin roof loudly", "hum"]
    assert batch["labels"] == [{"i": "0"}, {"i": "1"}, {"i": "2"}]
    ids, att = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == att.shape and ids.shape[0] == 3 and ids.dtype == torch.int64
    assert att.sum(1).tolist()[2] < att.sum(1).tolist()[1]
    assert ids[0, 0] == 101  # [CLS]


def test_without_tokenizer_has_no_token_keys():
    batch = Collator()([_item(0, 3, "x")])
    assert "input_ids" not in batch and batch["features"].shape == (1, 3, 80)


def test_all_bad_batch_keeps_keys_with_zero_batch(tokenizer):
    bad = [BadClip(0, "a", "/a.wav", "missing"), BadClip(1, "b", "/b.wav", "missing")]
    batch = Collator(tokenizer, num_mel_bins=64)(bad)
    assert batch["features"].shape == (0, 0, 64)
    assert batch["feature_lengths"].shape == (0,) and batch["feature_mask"].shape == (0, 0)
    assert batch["input_ids"].shape[0] == 0 and batch["attention_mask"].shape[0] == 0
    assert batch["ids"] == [] and batch["captions"] == [] and batch["skipped"] == bad


def test_mixed_bin_counts_are_rejected():
    with pytest.raises(ValueError, match="feature bins"):
        Collator()([_item(0, 3, "x"), _item(1, 3, "y", bins=64)])


def test_caption_tokenizer_adds_decoder_tokens_beside_the_text_towers(tokenizer):
    def short(caps):  # a different tokenizer for the decoder: truncates to 4 tokens
        out = tokenizer(caps)
        return {key: out[key][:, :4] for key in ("input_ids", "attention_mask")}

    items = [_item(0, 3, "a dog barks loudly at night"), _item(1, 2, "hum")]
    batch = Collator(tokenizer, caption_tokenizer=short)(items)
    assert batch["input_ids"].shape[1] > 4 and batch["caption_ids"].shape == (2, 4)
    assert torch.equal(batch["caption_ids"], batch["input_ids"][:, :4])
    assert batch["caption_mask"].tolist()[1] == [1, 1, 1, 0]  # [CLS] hum [SEP] [PAD]
    only_decoder = Collator(caption_tokenizer=short)(items)
    assert "input_ids" not in only_decoder and only_decoder["caption_ids"].shape == (2, 4)
    empty = Collator(caption_tokenizer=short)([BadClip(0, "a", "/a.wav", "missing")])
    assert empty["caption_ids"].shape == (0, 0)
