"""The embedding cache: hits across runs, invalidation by weights, clips and settings,
recovery from corrupt or partial entries, any fsspec location."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from alp_eval.cache import EmbeddingCache, clip_list_digest, key_digest
from alp_eval.datasets import load_esc50
from alp_eval.protocol.embeddings import load_or_extract

RATE = 16000


class FakeEncoder:
    """Frames = (mean, std) of each 40 ms of the wave, scaled by ``gain`` (the "weights")."""

    sample_rate = RATE

    def __init__(self, gain=1.0):
        self.gain, self.calls = gain, 0

    @property
    def fingerprint(self):
        return f"fake-{self.gain}"

    def frames(self, waves):
        self.calls += 1
        hop = RATE // 25
        lengths = torch.tensor([w.numel() // hop for w in waves])
        out = torch.zeros(len(waves), int(lengths.max()), 2)
        for b, w in enumerate(waves):
            chunks = w[: int(lengths[b]) * hop].reshape(-1, hop)
            out[b, : int(lengths[b])] = torch.stack([chunks.mean(1), chunks.std(1)], 1)
        return out * self.gain, lengths, 0.04


def _esc50(root, n=5):
    (root / "meta").mkdir(parents=True, exist_ok=True)
    rows = ["filename,fold,target,category"]
    for i in range(n):
        name = f"{i % 5 + 1}-{i}-A-{i % 2}.wav"
        rows.append(f"{name},{i % 5 + 1},{i % 2},{('a', 'b')[i % 2]}")
        _wave(root / "audio" / name, i)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def _wave(path, seed, seconds=0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(seed).uniform(-0.3, 0.3, int(seconds * RATE))
    sf.write(str(path), data.astype("float32"), RATE)


def _embed(bench, encoder, cache, keep_frames=False, max_seconds=10.0):
    return load_or_extract(bench, encoder, cache, max_seconds=max_seconds,
                           keep_frames=keep_frames, batch_size=2, workers=1)


def test_second_run_reads_the_cache_and_weights_or_clips_invalidate_it(tmp_path):
    root = _esc50(tmp_path / "esc")
    bench = load_esc50(root)
    encoder = FakeEncoder()
    first = _embed(bench, encoder, EmbeddingCache(str(tmp_path / "cache")))
    assert encoder.calls == 3 and not first.stats["from_cache"]
    cache = EmbeddingCache(str(tmp_path / "cache"))  # a new run, same folder
    second = _embed(bench, encoder, cache)
    assert encoder.calls == 3 and second.stats["from_cache"]
    assert cache.stats == {"hits": 1, "misses": 0, "corrupt": 0, "writes": 0}
    np.testing.assert_array_equal(first.pooled, second.pooled)
    assert second.ids == first.ids and second.frame_seconds == 0.04

    other = FakeEncoder(gain=2.0)  # other weights: another fingerprint
    changed = _embed(bench, other, cache)
    assert other.calls == 3 and cache.stats["misses"] == 1
    np.testing.assert_allclose(changed.pooled, 2 * first.pooled, rtol=1e-6)

    _wave(root / "audio" / "3-2-A-0.wav", seed=99, seconds=0.4)  # one file re-encoded
    _embed(load_esc50(root), encoder, cache)
    assert encoder.calls == 6 and cache.stats["misses"] == 2
    _embed(bench, encoder, cache, max_seconds=0.2)  # other extraction settings
    assert encoder.calls == 9
    encoder.device = torch.device("meta")  # the same weights where features round otherwise
    _embed(bench, encoder, cache)
    assert encoder.calls == 12  # a GPU's entry is not a CPU run's, nor the reverse
    assert not [p for p in (tmp_path / "cache").rglob("*") if ".tmp-" in p.name]


def test_frames_are_stored_when_asked_and_a_pooled_only_entry_is_upgraded(tmp_path):
    bench = load_esc50(_esc50(tmp_path / "esc"))
    encoder, cache = FakeEncoder(), EmbeddingCache(str(tmp_path / "cache"))
    _embed(bench, encoder, cache)
    with_frames = _embed(bench, encoder, cache, keep_frames=True)
    assert encoder.calls == 6 and cache.stats["misses"] == 2 and cache.stats["corrupt"] == 0
    again = _embed(bench, encoder, cache, keep_frames=True)
    pooled_only = _embed(bench, encoder, cache)
    assert encoder.calls == 6 and pooled_only.frames is None
    frames, lengths = again.frames_of(again.ids[:2])
    assert frames.shape == (2, 7, 2) and lengths.tolist() == [7, 7]
    np.testing.assert_allclose(frames.mean(1).numpy(), with_frames.pooled[:2], atol=1e-3)


@pytest.mark.parametrize("damage", ["truncate_array", "garbage_meta", "no_meta", "flip_byte"])
def test_a_corrupt_or_partial_entry_is_recomputed(tmp_path, damage):
    bench = load_esc50(_esc50(tmp_path / "esc"))
    encoder, cache = FakeEncoder(), EmbeddingCache(str(tmp_path / "cache"))
    first = _embed(bench, encoder, cache, keep_frames=True)
    (folder,) = [p.parent for p in (tmp_path / "cache").rglob("meta.json")]
    if damage == "truncate_array":
        data = (folder / "frames.npy").read_bytes()
        (folder / "frames.npy").write_bytes(data[: len(data) // 2])
    elif damage == "garbage_meta":
        (folder / "meta.json").write_text("{not json")
    elif damage == "no_meta":  # a writer killed before its sidecar
        os.remove(folder / "meta.json")
    else:
        data = bytearray((folder / "pooled.npy").read_bytes())
        data[-1] ^= 0xFF
        (folder / "pooled.npy").write_bytes(bytes(data))
    again = _embed(bench, encoder, cache, keep_frames=True)
    assert encoder.calls == 6 and not again.stats["from_cache"]
    counts = (cache.stats["misses"], cache.stats["corrupt"])
    assert counts == ((2, 0) if damage == "no_meta" else (1, 1))
    np.testing.assert_array_equal(again.pooled, first.pooled)
    assert _embed(bench, encoder, cache, keep_frames=True).stats["from_cache"]


def test_any_fsspec_url_and_the_sidecar(tmp_path):
    bench = load_esc50(_esc50(tmp_path / "esc"))
    encoder = FakeEncoder()
    url = f"memory://alp-cache-test-{os.getpid()}"
    _embed(bench, encoder, EmbeddingCache(url))
    cache = EmbeddingCache(url)
    assert _embed(bench, encoder, cache).stats["from_cache"] and encoder.calls == 3
    meta = json.loads(cache.fs.cat_file(next(p for p in cache.fs.find(cache.root)
                                             if p.endswith("meta.json"))))
    assert meta["format"] == "alp-eval-cache/1" and meta["key"]["encoder"] == "fake-1.0"
    assert meta["key"]["dataset"] == "esc50" and meta["key"]["clips"] == clip_list_digest(
        bench.clips)
    assert set(meta["arrays"]) == {"pooled", "offsets", "seconds"}
    assert meta["meta"]["ids"] == [c.id for c in bench.clips]
    cache.fs.rm(cache.root, recursive=True)


def test_key_and_clip_digests_are_order_and_content_sensitive(tmp_path):
    bench = load_esc50(_esc50(tmp_path / "esc"))
    assert key_digest({"a": 1, "b": 2}) == key_digest({"b": 2, "a": 1})
    assert key_digest({"a": 1}) != key_digest({"a": 2})
    assert clip_list_digest(bench.clips) != clip_list_digest(reversed(bench.clips))
    assert clip_list_digest(bench.clips) != clip_list_digest(bench.clips[:-1])
