"""Pipelines compared by test_bench_loader.py, all over the same WAV files.

- :func:`write_clips`: the shared file set (16 kHz WAVs, and some at 44.1 kHz so every
  pipeline also pays for resampling).
- :func:`decode_fbank_pass`: the ceiling's work, decode + resample + fbank of every clip in a
  plain loop in this process (no loader, no collation, no inter-process transfer);
  :func:`decode_pass` the same without the fbank; :class:`ParallelCeiling` the first in
  several processes side by side.
- :class:`NaiveFbankDataset` + :func:`pad_collate`: the per-file Dataset one writes first:
  soundfile decode, torchaudio resample, ``torchaudio.compliance.kaldi.fbank`` per item, a
  padding collate.
- :class:`LhotseFbankDataset` + :func:`lhotse_loader`: lhotse's on-the-fly pipeline
  (``OnTheFlyFeatures(Fbank(FbankConfig(num_mel_bins=80)))`` under a
  ``DynamicBucketingSampler``).
- :func:`epoch`: one pass over a loader, counting clips and seconds of audio.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf
from torch.utils.data import DataLoader, Dataset
from torchaudio.compliance import kaldi

from alp_data.audio import load_audio
from alp_data.features import Fbank
from alp_data.manifest import ManifestEntry

SAMPLE_RATE = 16000


def write_clips(folder: Path, num_clips: int = 200, *, seed: int = 0,
                min_seconds: float = 3.0, max_seconds: float = 10.0,
                resampled_every: int = 10) -> list[ManifestEntry]:
    """``num_clips`` mono PCM-16 WAVs of ``min_seconds``..``max_seconds`` (uniform) holding
    tones and noise; every ``resampled_every``-th clip is at 44.1 kHz, the rest at 16 kHz."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    entries = []
    for index in range(num_clips):
        rate = 44100 if resampled_every and index % resampled_every == resampled_every - 1 \
            else SAMPLE_RATE
        seconds = float(rng.uniform(min_seconds, max_seconds))
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
        wave = tone + 0.05 * rng.standard_normal(t.size)
        path = folder / f"clip-{index:04d}.wav"
        sf.write(str(path), wave.astype(np.float32), rate, subtype="PCM_16")
        entries.append(ManifestEntry(id=path.stem, audio=str(path), duration=t.size / rate,
                                     sample_rate=rate, captions=(f"a tone, clip {index}",)))
    return entries


def decode_fbank_pass(entries: Iterable[ManifestEntry],
                      fbank: Callable[[torch.Tensor], torch.Tensor]) -> int:
    """Decode (soundfile), resample to 16 kHz and fbank every clip here; returns frames."""
    frames = 0
    for entry in entries:
        frames += int(fbank(load_audio(entry.audio, SAMPLE_RATE)).shape[0])
    return frames


def _ceiling_process(clips, barrier, results) -> None:
    torch.set_num_threads(1)  # one thread, as a loader worker has
    fbank = Fbank()
    decode_fbank_pass(clips, fbank)  # warm-up
    results.put(None)  # ready: the first timed pass must not overlap anyone's warm-up
    while True:
        barrier.wait()
        start = time.perf_counter()
        decode_fbank_pass(clips, fbank)
        results.put(time.perf_counter() - start)


class ParallelCeiling:
    """The ceiling's work in ``n`` processes side by side, each over every clip; :meth:`run`
    times one pass of all of them and returns clips/s (n x clips / wall time). This is the
    ceiling "on the same cores" as n loader workers, measured rather than assumed to be n
    times one process's (shared caches, memory bandwidth and a VM's vCPUs make it less)."""

    def __init__(self, clips, n: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.clips, self.n = clips, n
        self.barrier, self.results = ctx.Barrier(n + 1), ctx.Queue()
        self.procs = [ctx.Process(target=_ceiling_process, daemon=True,
                                  args=(clips, self.barrier, self.results)) for _ in range(n)]
        for proc in self.procs:
            proc.start()
        for _ in range(n):  # every process warmed up before any pass is timed
            self.results.get()

    def run(self) -> float:
        self.barrier.wait()
        start = time.perf_counter()
        for _ in range(self.n):
            self.results.get()
        return self.n * len(self.clips) / (time.perf_counter() - start)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.join(timeout=30)


def sync(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_ms(call: Callable[[], Any], device: torch.device, repeat: int = 20) -> float:
    """Milliseconds per ``call()`` on ``device``: 3 warm-up calls, then the mean of
    ``repeat``, with the device's queue drained before and after."""
    for _ in range(3):
        call()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeat):
        call()
    sync(device)
    return 1000 * (time.perf_counter() - start) / repeat


def decode_pass(entries: Iterable[ManifestEntry]) -> int:
    """Decode (soundfile) and resample to 16 kHz every clip here, no features (what a loader
    worker does with ``data.features_on=device``); returns samples."""
    return sum(int(load_audio(entry.audio, SAMPLE_RATE).shape[0]) for entry in entries)


def kaldi_fbank(wave: torch.Tensor) -> torch.Tensor:
    """The plain ``torchaudio.compliance.kaldi.fbank`` call (80 bins, 25/10 ms, no dither)."""
    return kaldi.fbank(wave.unsqueeze(0) * 32768.0, num_mel_bins=80, dither=0.0,
                       energy_floor=0.0, sample_frequency=float(SAMPLE_RATE))


class NaiveFbankDataset(Dataset):
    """Per item: ``sf.read``, ``taf.resample`` when needed, :func:`kaldi_fbank`."""

    def __init__(self, entries: list[ManifestEntry]) -> None:
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        data, rate = sf.read(entry.audio, dtype="float32", always_2d=True)
        wave = torch.from_numpy(data.mean(axis=1))
        if rate != SAMPLE_RATE:
            wave = taf.resample(wave, rate, SAMPLE_RATE)
        return {"id": entry.id, "features": kaldi_fbank(wave)}


def pad_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad the ``(T, F)`` features to ``(B, T_max, F)`` with their lengths."""
    feats = [it["features"] for it in items]
    return {"ids": [it["id"] for it in items],
            "features": torch.nn.utils.rnn.pad_sequence(feats, batch_first=True),
            "feature_lengths": torch.tensor([f.shape[0] for f in feats])}


def naive_loader(entries: list[ManifestEntry], *, batch_size: int, num_workers: int
                 ) -> DataLoader:
    return DataLoader(NaiveFbankDataset(entries), batch_size=batch_size, shuffle=True,
                      num_workers=num_workers, collate_fn=pad_collate,
                      persistent_workers=num_workers > 0)


class LhotseFbankDataset(Dataset):
    """A lhotse-style dataset: a CutSet (one sampler batch) -> features computed on the fly."""

    def __init__(self) -> None:
        from lhotse import Fbank, FbankConfig
        from lhotse.dataset import OnTheFlyFeatures

        self.features = OnTheFlyFeatures(Fbank(FbankConfig(num_mel_bins=80)))

    def __getitem__(self, cuts: Any) -> dict[str, Any]:
        feats, lengths = self.features(cuts)
        return {"ids": [cut.recording_id for cut in cuts], "features": feats,
                "feature_lengths": lengths}


def lhotse_cuts(entries: list[ManifestEntry], manifest: Path) -> Any:
    """One MonoCut per file (``Recording.from_file``), resampled to 16 kHz where needed,
    written to ``manifest`` (JSONL) and read back lazily as lhotse recipes do."""
    from lhotse import CutSet, Recording

    recordings = [Recording.from_file(e.audio, recording_id=e.id) for e in entries]
    CutSet.from_manifests(recordings=recordings).resample(SAMPLE_RATE).to_file(manifest)
    return CutSet.from_jsonl_lazy(manifest)


def lhotse_loader(entries: list[ManifestEntry], manifest: Path, *, max_duration: float,
                  num_workers: int) -> DataLoader:
    """``DynamicBucketingSampler(max_duration, shuffle=True)`` batches -> worker processes."""
    from lhotse.dataset import DynamicBucketingSampler

    sampler = DynamicBucketingSampler(lhotse_cuts(entries, manifest),
                                      max_duration=max_duration, shuffle=True, seed=0)
    return DataLoader(LhotseFbankDataset(), sampler=sampler, batch_size=None,
                      num_workers=num_workers, persistent_workers=num_workers > 0)


def epoch(loader: DataLoader, epoch_index: int, durations: dict[str, float]
          ) -> tuple[int, float]:
    """Iterate one epoch (``set_epoch`` on the sampler and dataset where they have it);
    returns (clips, seconds of audio), the seconds from ``durations`` by clip id."""
    for obj in (getattr(loader, "batch_sampler", None), loader.sampler, loader.dataset):
        setter = getattr(obj, "set_epoch", None)
        if setter is not None:
            setter(epoch_index)
    clips, seconds = 0, 0.0
    for batch in loader:
        clips += len(batch["ids"])
        seconds += sum(durations[i] for i in batch["ids"])
    return clips, seconds
