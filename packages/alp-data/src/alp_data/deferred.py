"""Features computed where the model runs: loader workers decode, the device does the rest.

By default a loader worker decodes a clip and computes its fbank and SpecAugment masks, so a
machine's CPU cores bound the loader at their decode + fbank rate. With features deferred
(``ClipTransform(defer_features=True)``; ``data.features_on=device`` in a run config) a
worker stops after decoding: its batch carries the waves zero-padded (``waves``,
``wave_lengths``) and the SpecAugment masks it drew from each clip's own generator
(``time_mask``, ``freq_mask``). The main process then computes every clip's features in one
batched call on the training device (:func:`batch_features`; on an accelerator through
:meth:`~alp_data.features.Fbank.stacked`, a few kernels per batch), which costs the CPU
little more than the launches. :class:`FeaturesOnDevice` wraps a loader so that its batches
come out as usual, ``features`` included, on that device.

The features are the ones a worker computes: on the CPU the same floats (each wave's frames
go through the FFT alone; the masks get the mean of the clip's own unmasked features, as
:class:`~alp_data.features.SpecAugment` fills them); on a GPU equal to float32 rounding (one
FFT, one matrix product and, for the masks, one sum for the whole batch).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from alp_data.features import Fbank

__all__ = ["FeaturesOnDevice", "batch_features", "is_deferred"]

_DEFERRED_KEYS = ("waves", "wave_lengths", "time_mask", "freq_mask")

log = logging.getLogger(__name__)
_ANNOUNCED: set[torch.device] = set()  # devices already named in the log by this process


def is_deferred(batch: Mapping[str, Any]) -> bool:
    """Whether ``batch`` carries waves whose features are still to be computed."""
    return "waves" in batch and "features" not in batch


def batch_features(batch: Mapping[str, Any], fbank: Fbank,
                   device: torch.device | str = "cpu", *,
                   stacked: bool | None = None) -> dict[str, Any]:
    """A deferred batch with its features computed on ``device`` (a new dict).

    ``stacked``: compute all rows in one pass (:meth:`Fbank.stacked`: a few kernels per batch,
    equal to float32 rounding) rather than clip by clip (:meth:`Fbank.padded`: bit-exact);
    the default (None) is stacked on an accelerator and clip by clip on the CPU.

    ``features`` ``(B, T_max, F)`` zero-padded equals what the loader workers would have
    put there (see the module docstring); ``waves``, ``wave_lengths`` and the masks are
    dropped, so the waves' shared-memory segment goes back to its worker. The other keys stay
    as they are; ``feature_lengths`` must be what ``fbank`` gives for the waves (a batch made
    with another frame length or shift is an error).
    """
    missing = [k for k in ("waves", "wave_lengths", "feature_lengths") if k not in batch]
    if missing:
        raise ValueError(f"a deferred batch needs 'waves', 'wave_lengths' and "
                         f"'feature_lengths'; this one lacks {missing}")
    device = torch.device(device)
    out = {k: v for k, v in batch.items() if k not in _DEFERRED_KEYS}
    sizes = [int(n) for n in batch["wave_lengths"]]
    expected = [int(n) for n in batch["feature_lengths"]]
    counts = [fbank.num_frames(n) for n in sizes]
    if counts != expected:
        raise ValueError(
            f"the batch's feature_lengths {expected} are not what this Fbank gives for its "
            f"waves ({counts}): the loader's fbank config (window {fbank.window_samples}, "
            f"shift {fbank.shift_samples} samples here) differs from this one")
    waves = torch.as_tensor(batch["waves"]).to(device, non_blocking=True)
    bins = fbank.num_mel_bins
    frames = max(counts, default=0)
    time_mask, freq_mask = batch.get("time_mask"), batch.get("freq_mask")
    if freq_mask is not None and tuple(freq_mask.shape) != (len(sizes), bins):
        raise ValueError(f"the batch's freq_mask is {tuple(freq_mask.shape)}, but this Fbank "
                         f"makes {bins} bins for {len(sizes)} clips: the loader's fbank "
                         "config differs from this one")
    if stacked is None:
        stacked = device.type != "cpu"
    if stacked:
        features = fbank.stacked(waves, sizes)
    else:
        features = torch.empty(len(sizes), frames, bins, dtype=torch.float32, device=device)
        if sizes:
            fbank.padded([waves[row, :size] for row, size in enumerate(sizes)], out=features)
    if time_mask is not None and freq_mask is not None and len(sizes):
        lengths = torch.tensor(counts, dtype=torch.int64).to(device, non_blocking=True)
        valid = torch.arange(frames, device=device)[None, :] < lengths[:, None]
        time_mask = torch.as_tensor(time_mask).to(device, non_blocking=True)
        freq_mask = torch.as_tensor(freq_mask).to(device, non_blocking=True)
        # the mean of each clip's own frames before masking, as SpecAugment takes it
        if stacked:  # frames past a clip are zero: one sum for the batch, not a call per clip
            cells = (lengths * bins).clamp(min=1).to(features.dtype)
            means = features.sum(dim=(1, 2)) / cells
        else:  # clip by clip, the same floats as the worker's SpecAugment
            means = torch.stack([features[row, :count].mean() if count
                                 else features.new_zeros(()) for row, count in enumerate(counts)])
        masked = (time_mask[:, :, None] | freq_mask[:, None, :]) & valid[:, :, None]
        features = torch.where(masked, means[:, None, None], features)
    out["features"] = features
    return out


class FeaturesOnDevice:
    """A loader whose deferred batches get their features on ``device`` as they come out.

    Iterating yields ``batch_features(batch, fbank, device)`` for each deferred batch (and
    any other batch unchanged). Everything else (``len()``, ``batch_sampler``, ``dataset``,
    ``skip``, ``state_dict``/``load_state_dict`` of a shard loader) is the wrapped loader's.
    """

    def __init__(self, loader: Any, fbank: Fbank, device: torch.device | str) -> None:
        self.loader = loader
        self.fbank = fbank
        self.device = torch.device(device)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.loader:
            if not is_deferred(batch):
                yield batch
                continue
            if self.device not in _ANNOUNCED:
                _ANNOUNCED.add(self.device)
                log.info("fbank + SpecAugment of each batch computed on %s in the main process "
                         "(the loader workers only decode)", self.device)
            yield batch_features(batch, self.fbank, self.device)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)
