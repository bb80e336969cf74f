"""Batch assembly: zero-padded features with lengths and masks, tokenised captions.

Bad clips are set aside in ``skipped`` instead of failing the batch; a batch of only bad
clips keeps every key with a batch size of 0 so the training loop can skip it uniformly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from alp_data.buffers import LoaderBatch, batch_tensor
from alp_data.transform import BadClip, ClipBatch

__all__ = ["Collator", "Tokenizer"]

Tokenizer = Callable[[list[str]], dict[str, torch.Tensor]]


class Collator:
    """Callable ``list[item | BadClip] -> batch`` (picklable; runs in loader workers).

    A :class:`~alp_data.transform.ClipBatch` (what ``ClipTransform.batch`` and the map-style
    dataset's ``__getitems__`` return) brings its features already padded and stacked, which
    the batch then holds as they are. In a loader worker the batch is a
    :class:`~alp_data.buffers.LoaderBatch` (a dict): it sends its small tensors by value, and
    when its features lie in the worker's pooled segment it hands that back once the main
    process has freed them.

    The batch holds ``ids``, ``indices``, ``features`` ``(B, T_max, F)`` float32 zero-padded,
    ``feature_lengths`` ``(B,)`` int64, ``feature_mask`` ``(B, T_max)`` bool (True on real
    frames), ``captions`` (the one used per clip), ``all_captions``, ``labels``, ``skipped``
    and, with a tokenizer, ``input_ids`` and
    ``attention_mask`` from ``tokenizer(captions)``. The tokenizer must return tensors padded to
    a common length (e.g. a Hugging Face tokenizer with ``padding=True, return_tensors="pt"``).
    With a ``caption_tokenizer`` (a caption decoder's, which may differ from the text tower's)
    the same captions also come as ``caption_ids`` and ``caption_mask``.

    A batch whose features were deferred (``ClipTransform(defer_features=True)``) holds
    ``waves``, ``wave_lengths`` and, in training with SpecAugment, ``time_mask`` and
    ``freq_mask`` instead of ``features`` (every other key as above);
    :func:`alp_data.deferred.batch_features` turns it into the batch above.
    """

    def __init__(
        self, tokenizer: Tokenizer | None = None, *, num_mel_bins: int = 80,
        caption_tokenizer: Tokenizer | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.caption_tokenizer = caption_tokenizer
        self.num_mel_bins = num_mel_bins

    @staticmethod
    def _tokens(
        tokenizer: Tokenizer | None, captions: list[str], ids_key: str, mask_key: str
    ) -> dict[str, torch.Tensor]:
        if tokenizer is None:
            return {}
        if not captions:
            empty = torch.zeros(0, 0, dtype=torch.int64)
            return {ids_key: empty, mask_key: empty.clone()}
        out = tokenizer(captions)
        if "input_ids" not in out:
            raise ValueError("the tokenizer must return a dict with 'input_ids' (and "
                             f"'attention_mask'); got keys {sorted(out)}")
        ids = torch.as_tensor(out["input_ids"], dtype=torch.int64)
        mask = out.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask, dtype=torch.int64)
        return {ids_key: ids, mask_key: mask}

    def _stack(self, good: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The items' ``(T, F)`` features zero-padded into ``(B, T_max, F)``, with lengths."""
        bins = good[0]["features"].shape[1] if good else self.num_mel_bins
        lengths = torch.tensor([int(it["features"].shape[0]) for it in good], dtype=torch.int64)
        t_max = int(lengths.max()) if good else 0
        features = batch_tensor(len(good), t_max, bins)
        for row, it in enumerate(good):
            feats = it["features"]
            if feats.shape[1] != bins:
                raise ValueError(f"clip {it['id']!r} has {feats.shape[1]} feature bins, "
                                 f"the batch has {bins}; use one Fbank config per loader")
            features[row, : feats.shape[0]] = feats
            features[row, feats.shape[0]:] = 0.0
        return features, lengths

    def __call__(self, items: Sequence[dict[str, Any] | BadClip]) -> dict[str, Any]:
        good = [it for it in items if not isinstance(it, BadClip)]
        skipped = [it for it in items if isinstance(it, BadClip)]
        deferred = isinstance(items, ClipBatch) and items.waves is not None
        lease_key = "features"
        extra: dict[str, Any] = {}
        if deferred:  # waves, not features (see alp_data.deferred)
            lengths = items.lengths
            t_max = int(lengths.max()) if lengths.numel() else 0
            extra = {"waves": items.waves, "wave_lengths": items.wave_lengths}
            if items.time_mask is not None:
                extra.update(time_mask=items.time_mask, freq_mask=items.freq_mask)
            lease_key = "waves"
        else:
            if isinstance(items, ClipBatch):  # features already stacked by ClipTransform.batch
                features, lengths = items.features, items.lengths
            else:
                features, lengths = self._stack(good)
            t_max = int(features.shape[1])
            extra = {"features": features}
        mask = torch.arange(t_max).unsqueeze(0) < lengths.unsqueeze(1)
        captions = [it["caption"] for it in good]
        batch: dict[str, Any] = {
            "ids": [it["id"] for it in good],
            "indices": [int(it.get("index", -1)) for it in good],
            **extra,
            "feature_lengths": lengths,
            "feature_mask": mask,
            "captions": captions,
            "all_captions": [tuple(it.get("captions", (it["caption"],))) for it in good],
            "labels": [it.get("labels", {}) for it in good],
            "skipped": skipped,
        }
        batch.update(self._tokens(self.tokenizer, captions, "input_ids", "attention_mask"))
        batch.update(self._tokens(self.caption_tokenizer, captions, "caption_ids", "caption_mask"))
        if torch.utils.data.get_worker_info() is None:
            return batch
        return LoaderBatch(batch, lease=items.lease if isinstance(items, ClipBatch) else None,
                           lease_key=lease_key)
