"""Recipe header probing on every backend: threads in this process, a Dask cluster (by its
address, or a LocalCluster started for the prepare), and ``alp data prepare backend=dask``.
The manifests and the report are byte-identical whichever ran the probing."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from pydantic import ValidationError

from alp_data.recipes import common
from alp_data.recipes.audiocaps import AudioCaps, AudioCapsConfig

HEAD = ["audiocap_id", "youtube_id", "start_time", "caption"]
FILES = ("train.jsonl", "test.jsonl", common.REPORT)


def _audio(path, seconds, rate=8000, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(-0.1, 0.1, (int(seconds * rate), channels))
    sf.write(str(path), data.astype("float32"), rate)


def _csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEAD)
        writer.writerows(rows)


def _audiocaps(root, clips=30):
    """An AudioCaps layout of ``clips`` train clips (one missing, one corrupt, some FLAC, some
    stereo) and two test clips with five captions each."""
    rows = [[i, f"yt{i:03d}", 10 * (i % 3), f"sound number {i}"] for i in range(clips)]
    _csv(root / "train.csv", rows)
    for i, yt, start, _ in rows:
        if i == 3:
            continue  # missing
        path = root / "audio" / "train" / f"{yt}_{start}.{'flac' if i % 4 == 0 else 'wav'}"
        if i == 5:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"RIFF not really a wave file" * 20)  # unreadable
            continue
        _audio(path, 0.2 + 0.05 * (i % 5), rate=(8000, 16000)[i % 2], channels=1 + i % 2)
    _csv(root / "test.csv", [[100 + k, "ytest", 0, f"test caption {k}"] for k in range(5)]
         + [[200 + k, "ytest2", 30, f"other caption {k}"] for k in range(5)])
    _audio(root / "audio" / "test" / "ytest_0.wav", 0.5)
    _audio(root / "audio" / "test" / "ytest2_30.wav", 0.3, rate=16000)


def _prepare(root, out, **options):
    """The bytes of the files a fresh prepare writes to ``out`` (the report names ``out``,
    so runs to compare write to the same folder, emptied first)."""
    shutil.rmtree(out, ignore_errors=True)
    AudioCaps(AudioCapsConfig(root=str(root), max_missing=0.2, **options)).prepare(out)
    return {name: (out / name).read_bytes() for name in FILES}


def test_threads_and_one_worker_give_the_same_bytes(tmp_path):
    _audiocaps(tmp_path)
    serial = _prepare(tmp_path, tmp_path / "out", workers=1)
    assert _prepare(tmp_path, tmp_path / "out", workers=5) == serial
    report = json.loads(serial[common.REPORT])
    reasons = {s["id"]: s["reason"] for s in report["skipped"]}
    assert reasons["yt003_0"] == "missing"
    assert reasons["yt005_20"].startswith("unreadable: ") and "0x" not in reasons["yt005_20"]
    assert report["splits"]["train"]["clips"] == 28 and report["splits"]["test"]["clips"] == 2
    assert not set(common.RUN_OPTIONS) & set(report["config"])  # run options are not recorded


def test_run_options_do_not_change_the_cache_key(tmp_path):
    _audiocaps(tmp_path, clips=4)
    out = tmp_path / "out"
    first = AudioCaps(AudioCapsConfig(root=str(tmp_path), max_missing=0.5, workers=1))
    paths = first.prepare(out)
    (tmp_path / "audio" / "train" / "yt001_10.wav").unlink()  # a re-probe would skip it
    again = AudioCaps(AudioCapsConfig(root=str(tmp_path), max_missing=0.5, workers=3))
    assert again.prepare(out) == paths and again.report == first.report  # reused, not redone


def test_address_needs_the_dask_backend(tmp_path):
    with pytest.raises(ValidationError, match="needs backend=dask"):
        AudioCapsConfig(root=str(tmp_path), address="tcp://127.0.0.1:8786")
    with pytest.raises(ValidationError, match="backend"):
        AudioCapsConfig(root=str(tmp_path), backend="ray")


def test_dask_chunks_cover_every_clip_in_order(tmp_path, monkeypatch):
    """The chunking alone (map_tasks run here): chunks of at most PROBE_CHUNK, order kept."""
    calls = []

    def fake_map(fn, tasks, **kwargs):
        calls.append(([len(t) for t in tasks], kwargs))
        return [fn(t) for t in tasks]

    monkeypatch.setattr("alp_data.parallel.map_tasks", fake_map)
    monkeypatch.setattr(common, "PROBE_CHUNK", 4)
    _audiocaps(tmp_path)
    config = AudioCapsConfig(root=str(tmp_path), backend="dask", workers=2)
    candidates = AudioCaps(config).candidates()
    probes = common.probe_headers(candidates, config)
    assert probes == [common.probe_audio(c.audio) for c in candidates]
    sizes, kwargs = calls[0]
    assert sum(sizes) == len(candidates) and max(sizes) == 4 and len(sizes) > 2
    assert kwargs == {"workers": 2, "backend": "dask", "address": None}


@pytest.fixture(scope="module")
def cluster():
    """A Dask LocalCluster of two single-threaded worker processes for the module."""
    distributed = pytest.importorskip("distributed")
    from alp_data import parallel

    with distributed.LocalCluster(**parallel._local_cluster_options(2)) as local_cluster:
        yield local_cluster


@pytest.mark.distributed
def test_dask_cluster_gives_the_same_manifests_as_local(tmp_path, cluster):
    _audiocaps(tmp_path, clips=40)  # 42 clips in chunks of 6: seven tasks on two workers
    local = _prepare(tmp_path, tmp_path / "out", workers=1)
    dask = _prepare(tmp_path, tmp_path / "out", backend="dask", workers=2,
                    address=cluster.scheduler_address)
    assert dask == local
    assert cluster.scheduler_address not in dask[common.REPORT].decode()


@pytest.mark.distributed
def test_cli_prepare_with_backend_dask_and_two_workers(tmp_path, capsys):
    pytest.importorskip("distributed")
    cli = pytest.importorskip("alp_cli.main")
    _audiocaps(tmp_path, clips=12)
    out = tmp_path / "out"
    local = _prepare(tmp_path, out, workers=1)
    shutil.rmtree(out)
    assert cli.main(["data", "prepare", "audiocaps", "--root", str(tmp_path), "--out", str(out),
                     "max_missing=0.2", "backend=dask", "workers=2"]) == 0
    assert "skipped 2 of 14 listed clips" in capsys.readouterr().out
    assert {name: (out / name).read_bytes() for name in FILES} == local
