"""Embed every clip of a benchmark once: decode, keep the first ``max_seconds``, encode.

Clips are decoded with :func:`alp_data.audio.load_audio` (soundfile; a few threads read ahead
of the encoder) at the encoder's sample rate, reading only ``[offset, offset + min(duration,
max_seconds))``; batches of waves (clips of similar file size together, for less padding)
go through ``encoder.frames``. Each clip keeps its masked-mean pooled frames (what the linear
probe reads) and, when asked, its valid frames (attention probe, SED), stored flat as
(total frames, D) with per-clip offsets (float16 when every value fits, else float32). A clip that
fails to decode, or is shorter than one encoder frame, is recorded in ``failed`` with its
reason and left out; the run goes on. Results go through an :class:`~alp_eval.cache.
EmbeddingCache` when one is given.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from alp_eval.cache import EmbeddingCache, clip_list_digest
from alp_eval.datasets import Benchmark, BenchmarkClip
from alp_eval.probe import masked_mean_pool

__all__ = ["EXTRACTION_VERSION", "ClipEmbeddings", "extract_clips", "load_or_extract"]

log = logging.getLogger(__name__)

#: bump when what is stored for the same inputs changes (invalidates every cache entry)
EXTRACTION_VERSION = 1
_FLOAT16_MAX = 60000.0


@dataclass
class ClipEmbeddings:
    """Embeddings of the clips that decoded, in clip order.

    ``pooled`` (N, D) float32; ``frames`` (sum of lengths, D) or None, clip ``i`` owning rows
    ``offsets[i]:offsets[i + 1]``; ``seconds`` (N,) audio seconds embedded per clip;
    ``failed``: one ``{"id", "path", "reason", "error"}`` per clip left out; ``stats``: counts
    and timings of the extraction (``from_cache`` when read back).
    """

    ids: list[str]
    pooled: np.ndarray
    frames: np.ndarray | None
    offsets: np.ndarray
    seconds: np.ndarray
    frame_seconds: float
    failed: list[dict[str, str]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index = {clip_id: i for i, clip_id in enumerate(self.ids)}

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._index

    def rows(self, ids: Sequence[str]) -> list[int]:
        return [self._index[i] for i in ids]

    def pooled_of(self, ids: Sequence[str]) -> Tensor:
        """(n, D) float32 pooled embeddings of ``ids``."""
        return torch.from_numpy(self.pooled[self.rows(ids)].astype(np.float32, copy=False))

    def frames_for(self, clip_id: str) -> np.ndarray:
        """The valid frames (n, D) of one clip, as stored (float16 or float32)."""
        if self.frames is None:
            raise ValueError("these embeddings were extracted without frames (keep_frames)")
        row = self._index[clip_id]
        return self.frames[self.offsets[row]:self.offsets[row + 1]]

    def frames_of(self, ids: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Padded float32 frames (n, T, D) of ``ids`` (zeros past each length) and lengths."""
        parts = [self.frames_for(clip_id) for clip_id in ids]
        lengths = torch.tensor([part.shape[0] for part in parts], dtype=torch.long)
        dim = self.frames.shape[1] if self.frames is not None else 0
        out = torch.zeros(len(parts), int(lengths.max()) if parts else 0, dim)
        for k, part in enumerate(parts):
            out[k, : part.shape[0]] = torch.from_numpy(part.astype(np.float32))
        return out, lengths

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"pooled": self.pooled, "offsets": self.offsets, "seconds": self.seconds}
        if self.frames is not None:
            out["frames"] = self.frames
        return out


def _decode(clip: BenchmarkClip, sample_rate: int, max_seconds: float) -> Tensor:
    from alp_data.audio import load_audio

    limit = max_seconds if clip.duration is None else min(clip.duration, max_seconds)
    return load_audio(clip.path, sample_rate, offset=clip.offset, duration=limit)


def _size(clip: BenchmarkClip) -> int:
    """The file's size: a cheap proxy of the decoded length, to batch similar clips."""
    try:
        return os.stat(clip.path).st_size
    except OSError:
        return 0


def _decoded(future: Future) -> tuple[Tensor | None, str, str]:
    from alp_core.errors import DataError

    try:
        return future.result(), "", ""
    except DataError as err:
        return None, getattr(err, "reason", "unreadable"), str(err)


@torch.inference_mode()
def extract_clips(clips: Sequence[BenchmarkClip], encoder: Any, *, max_seconds: float,
                  keep_frames: bool, batch_size: int = 16, workers: int = 4) -> ClipEmbeddings:
    """Embed ``clips`` with ``encoder`` (a :class:`~alp_eval.protocol.FrameEncoder`)."""
    rate = int(encoder.sample_rate)
    t0 = time.perf_counter()
    kept: dict[int, tuple[np.ndarray, np.ndarray | None, float]] = {}  # clip index -> output
    failed: dict[int, dict[str, str]] = {}
    frame_seconds = 0.0
    # batches of similar length (less padding); outputs go back to clip order at the end
    order = sorted(range(len(clips)), key=lambda i: _size(clips[i]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    encode_s = 0.0
    with ThreadPoolExecutor(max(1, workers)) as pool:
        def submit(batch: list[int]) -> list[Future]:
            return [pool.submit(_decode, clips[i], rate, max_seconds) for i in batch]

        pending = submit(batches[0]) if batches else []
        for index, batch in enumerate(batches):
            current = pending
            pending = submit(batches[index + 1]) if index + 1 < len(batches) else []
            waves, decoded = [], []
            for i, future in zip(batch, current):
                wave, reason, error = _decoded(future)
                if wave is None:
                    failed[i] = {"id": clips[i].id, "path": clips[i].path, "reason": reason,
                                 "error": error}
                    continue
                waves.append(wave)
                decoded.append(i)
            if not waves:
                continue
            t1 = time.perf_counter()
            out, lengths, frame_seconds = encoder.frames(waves)
            out, lengths = out.detach().float().cpu(), lengths.detach().long().cpu()
            encode_s += time.perf_counter() - t1
            mean = masked_mean_pool(out, lengths).numpy()
            for b, i in enumerate(decoded):
                n = int(lengths[b])
                if n == 0:
                    failed[i] = {"id": clips[i].id, "path": clips[i].path,
                                 "reason": "too_short", "error": f"{clips[i].path}: "
                                 f"{waves[b].numel() / rate:.3f} s gives no encoder frame"}
                    continue
                kept[i] = (mean[b], out[b, :n].numpy().copy() if keep_frames else None,
                           waves[b].numel() / rate)
    done = sorted(kept)
    ids = [clips[i].id for i in done]
    pooled = [kept[i][0] for i in done]
    frames: list[np.ndarray] = [f for i in done if (f := kept[i][1]) is not None]
    seconds = [kept[i][2] for i in done]
    failed_list = [failed[i] for i in sorted(failed)]
    dim = pooled[0].shape[0] if pooled else 0
    stacked: np.ndarray | None = np.concatenate(frames) if frames else None
    if stacked is not None and np.isfinite(stacked).all() and (
            np.abs(stacked).max(initial=0.0) < _FLOAT16_MAX):
        stacked = stacked.astype(np.float16)  # halves memory and cache size
    lengths_np = np.array([f.shape[0] for f in frames], dtype=np.int64) if keep_frames else (
        np.zeros(len(ids), dtype=np.int64))
    elapsed = time.perf_counter() - t0
    audio = float(sum(seconds))
    stats = {"clips": len(ids), "failed": len(failed_list), "audio_seconds": round(audio, 3),
             "seconds": round(elapsed, 4), "encode_seconds": round(encode_s, 4),
             "clips_per_s": round(len(ids) / max(elapsed, 1e-9), 2),
             "audio_s_per_s": round(audio / max(elapsed, 1e-9), 2), "from_cache": False}
    return ClipEmbeddings(
        ids=ids, pooled=np.stack(pooled).astype(np.float32) if pooled else np.zeros((0, dim),
                                                                                     np.float32),
        frames=stacked if keep_frames else None,
        offsets=np.concatenate([[0], np.cumsum(lengths_np)]).astype(np.int64),
        seconds=np.asarray(seconds, dtype=np.float32), frame_seconds=float(frame_seconds),
        failed=failed_list, stats=stats)


def load_or_extract(bench: Benchmark, encoder: Any, cache: EmbeddingCache | None, *,
                    max_seconds: float, keep_frames: bool, batch_size: int = 16,
                    workers: int = 4) -> ClipEmbeddings:
    """The embeddings of every clip of ``bench``: from ``cache`` when it holds them for this
    encoder, clip list and settings (with frames if ``keep_frames``), else extracted and
    stored there."""
    key = {"encoder": str(encoder.fingerprint), "dataset": bench.name,
           "clips": clip_list_digest(bench.clips), "n_clips": len(bench.clips),
           "sample_rate": int(encoder.sample_rate), "max_seconds": float(max_seconds),
           "crop": "head", "version": EXTRACTION_VERSION,
           # the features are computed where the encoder runs; a GPU's float32 FFT rounds
           # differently from the CPU's, so embeddings made on one are not the other's
           "device": torch.device(getattr(encoder, "device", "cpu")).type}
    if cache is not None:
        entry = cache.get(bench.name, key, require=("frames",) if keep_frames else ())
        if entry is not None:
            meta = entry.meta
            stats = {**meta["stats"], "from_cache": True}
            return ClipEmbeddings(
                ids=list(meta["ids"]), pooled=entry.arrays["pooled"],
                frames=entry.arrays.get("frames") if keep_frames else None,
                offsets=entry.arrays["offsets"], seconds=entry.arrays["seconds"],
                frame_seconds=float(meta["frame_seconds"]), failed=list(meta["failed"]),
                stats=stats)
    log.info("%s: embedding %d clips (max %.1f s each%s)", bench.name, len(bench.clips),
             max_seconds, ", with frames" if keep_frames else "")
    emb = extract_clips(bench.clips, encoder, max_seconds=max_seconds, keep_frames=keep_frames,
                        batch_size=batch_size, workers=workers)
    if cache is not None:
        cache.put(bench.name, key, emb.arrays(), {
            "ids": emb.ids, "failed": emb.failed, "frame_seconds": emb.frame_seconds,
            "stats": emb.stats})
    return emb
