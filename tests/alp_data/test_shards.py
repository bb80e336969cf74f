"""Tar shards: writing (webdataset layout, deterministic, parallel), streaming every clip
exactly once over ranks x workers, exact mid-epoch resume, duration buckets, damaged shards."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
import soundfile as sf
import torch

from alp_core.errors import DataError
from alp_data.collate import Collator
from alp_data.dataset import AudioCaptionDataset
from alp_data.demo import DemoCorpusConfig, generate_demo_corpus
from alp_data.features import SpecAugment
from alp_data.manifest import ManifestEntry, read_manifest
from alp_data.shards.index import expand_braces, open_shards, read_index
from alp_data.shards.plan import EpochPlan, PlanConfig
from alp_data.shards.stream import build_stream_loader
from alp_data.shards.writer import write_shards
from alp_data.transform import AudioConfig, ClipTransform


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 60-clip demo corpus (FLAC files of 1-2 s) and its train split as 7-clip shards."""
    root = tmp_path_factory.mktemp("demo")
    paths = generate_demo_corpus(root / "corpus", DemoCorpusConfig(
        num_clips=60, min_seconds=1.0, max_seconds=2.0, num_workers=1))
    entries = read_manifest(paths["train"])
    report = write_shards(str(paths["train"]), str(root / "shards"), max_clips_per_shard=7)
    return {"root": root, "entries": entries, "index": report.index,
            "manifest": str(paths["train"])}


def _ids(loader) -> list[list[str]]:
    return [list(batch["ids"]) for batch in loader]


def _loader(index, *, rank=0, world=1, workers=0, batch=4, train=False, seed=0, **plan):
    transform = ClipTransform(audio=AudioConfig(max_seconds=1.0 if train else 30.0),
                              train=train, seed=seed,
                              spec_augment=SpecAugment() if train else None)
    config = PlanConfig(batch_size=batch, shuffle=plan.pop("shuffle", True), seed=seed,
                        shuffle_buffer=plan.pop("shuffle_buffer", 5), **plan)
    return build_stream_loader(index, transform, Collator(), plan=config, rank=rank,
                               world_size=world, num_workers=workers)


# -- writing -------------------------------------------------------------------------------
# webdataset's own tar iterator leaves its last file for the garbage collector to close
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_shards_hold_every_clip_once_with_its_original_bytes_and_webdataset_reads_them(demo):
    import webdataset as wds

    index, entries = demo["index"], demo["entries"]
    assert index.clips == len(entries) and [s.clips for s in index.shards][:-1] == [7] * (
        len(index.shards) - 1)
    assert index.seconds == pytest.approx(sum(e.duration for e in entries), abs=1e-3)
    by_id = {e.id: e for e in entries}
    urls = [s.url for s in index.shards]
    seen = []
    for sample in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        entry = by_id[meta["id"]]
        assert sample["flac"] == Path(entry.audio).read_bytes()  # the original codec, as is
        assert meta["captions"] == list(entry.captions) and meta["labels"] == entry.labels
        assert meta["duration"] == pytest.approx(entry.duration)
        seen.append(meta["id"])
    assert sorted(seen) == sorted(by_id)
    assert seen != [e.id for e in entries]  # written in a seeded random order


def test_writing_is_deterministic_for_any_number_of_workers(demo, tmp_path):
    one = write_shards(demo["manifest"], str(tmp_path / "one"), max_clips_per_shard=7)
    two = write_shards(demo["manifest"], str(tmp_path / "two"), max_clips_per_shard=7, workers=2)
    for a, b in zip(one.index.shards, two.index.shards, strict=True):
        assert Path(a.url).read_bytes() == Path(b.url).read_bytes()
        assert Path(a.url).read_bytes() == (demo["root"] / "shards" / Path(a.url).name
                                            ).read_bytes()
    other = write_shards(demo["manifest"], str(tmp_path / "seed1"), max_clips_per_shard=7,
                         seed=1)
    assert [s.durations for s in other.index.shards] != [s.durations for s in one.index.shards]


def test_target_size_cuts_shards_by_bytes(demo, tmp_path):
    sizes = [Path(e.audio).stat().st_size for e in demo["entries"]]
    target = 4 * max(sizes) / 1e6
    report = write_shards(demo["manifest"], str(tmp_path / "sized"), target_size_mb=target)
    assert len(report.index.shards) > 2
    for shard in report.index.shards:
        assert shard.bytes <= target * 1e6 + max(sizes) + 4096  # at most one clip over
        assert shard.bytes == Path(shard.url).stat().st_size


def test_a_segment_of_a_longer_file_is_stored_as_flac_of_just_that_segment(tmp_path):
    rate = 16000
    wave = (np.random.default_rng(0).standard_normal(3 * rate) * 0.1).astype(np.float32)
    sf.write(tmp_path / "long.wav", wave, rate, subtype="PCM_16")
    entries = [ManifestEntry("seg", str(tmp_path / "long.wav"), 1.0, rate, ("a",), offset=1.5)]
    report = write_shards(entries, str(tmp_path / "out"))
    with tarfile.open(report.index.shards[0].url) as tar:
        names = tar.getnames()
        data = tar.extractfile(names[0]).read()
        meta = json.loads(tar.extractfile(names[1]).read())
    assert names == ["000000_000000.flac", "000000_000000.json"]
    got, got_rate = sf.read(io.BytesIO(data), dtype="float32")
    expected = sf.read(tmp_path / "long.wav", dtype="float32")[0][int(1.5 * rate):int(2.5 * rate)]
    assert got_rate == rate and np.array_equal(got, expected)  # lossless, the segment only
    assert meta["duration"] == pytest.approx(1.0) and "offset" not in meta


def test_unreadable_audio_is_left_out_and_listed_and_a_budget_applies(demo, tmp_path):
    entries = list(demo["entries"][:10])
    entries[3] = ManifestEntry("gone", str(tmp_path / "gone.flac"), 1.0, 16000, ("x",))
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    entries[5] = ManifestEntry("bad", str(tmp_path / "bad.wav"), 1.0, 16000, ("x",))
    report = write_shards(entries, str(tmp_path / "ok"), max_missing=0.2)
    assert report.index.clips == 8
    assert sorted(s["id"] for s in report.skipped) == ["bad", "gone"]
    assert json.loads((tmp_path / "ok" / "index.json").read_text())["skipped"][0]["error"]
    with pytest.raises(DataError, match="2 of 10 clips could not be read"):
        write_shards(entries, str(tmp_path / "strict"), max_missing=0.1)
    assert read_index(str(tmp_path / "strict")).clips == 8  # what was written is kept


def test_shards_on_an_fsspec_url(demo):
    report = write_shards(demo["entries"][:9], "memory://alp-test/shards", max_clips_per_shard=4)
    index = open_shards("memory://alp-test/shards")
    assert [s.url for s in index.shards] == [s.url for s in report.index.shards]
    ids = [i for batch in _ids(_loader(index, batch=2)) for i in batch]
    assert sorted(ids) == sorted(e.id for e in demo["entries"][:9])
    fsspec.filesystem("memory").rm("/alp-test", recursive=True)


def test_brace_patterns_select_shards_from_the_index(demo):
    assert expand_braces("a-{08..10}.tar") == ["a-08.tar", "a-09.tar", "a-10.tar"]
    assert expand_braces("{x,y}/{1..2}") == ["x/1", "x/2", "y/1", "y/2"]
    folder = demo["root"] / "shards"
    picked = open_shards(str(folder / "shard-{000001..000002}.tar"))
    assert [Path(s.url).name for s in picked.shards] == ["shard-000001.tar", "shard-000002.tar"]
    with pytest.raises(DataError, match="not in"):
        open_shards(str(folder / "shard-{000001..000099}.tar"))
    with pytest.raises(DataError, match="alp data shard"):
        open_shards(str(demo["root"] / "nowhere"))


# -- streaming -----------------------------------------------------------------------------
@pytest.mark.parametrize("workers", [0, 2])
def test_two_ranks_by_two_workers_see_every_clip_exactly_once_per_epoch(demo, workers):
    index, expected = demo["index"], sorted(e.id for e in demo["entries"])
    for epoch in (0, 1):
        seen, counts = [], []
        for rank in range(2):
            loader = _loader(index, rank=rank, world=2, workers=workers, batch=4)
            loader.set_epoch(epoch)
            batches = _ids(loader)
            assert len(batches) == len(loader)
            counts.append(len(batches))
            seen += [i for b in batches for i in b]
        assert sorted(seen) == expected, f"epoch {epoch}"
        assert counts[0] == counts[1]  # collectives stay in step


def test_the_order_is_seeded_per_epoch_and_the_same_for_any_worker_count(demo):
    index = demo["index"]

    def epoch(e, seed=0, workers=2):
        loader = _loader(index, workers=workers, seed=seed)
        loader.set_epoch(e)
        return _ids(loader)

    first = epoch(0)
    assert epoch(0) == first
    assert epoch(1) != first and epoch(0, seed=1) != first
    plan = EpochPlan(index, PlanConfig(batch_size=4, shuffle_buffer=5), 0, num_workers=2)
    assert [[i for i in b] for b in first] == [
        [index_id(demo, p) for p in batch] for batch in plan.batches(0)]


def index_id(demo, position: int) -> str:
    """The clip id at a global position of epoch 0's plan, read straight from the tar."""
    plan = EpochPlan(demo["index"], PlanConfig(batch_size=4, shuffle_buffer=5), 0)
    shard, local = plan.locate(position)
    with tarfile.open(demo["index"].shards[shard].url) as tar:
        name = [n for n in tar.getnames() if n.endswith(f"_{local:06d}.json")][0]
        return json.loads(tar.extractfile(name).read())["id"]


@pytest.mark.parametrize("consumed", [0, 3, 5])
def test_resume_from_state_gives_exactly_the_remaining_batches_in_order(demo, consumed):
    index = demo["index"]
    full = _loader(index, rank=1, world=2, workers=2, train=True)
    full.set_epoch(2)
    reference = [(b["ids"], b["features"]) for b in full]
    first = _loader(index, rank=1, world=2, workers=2, train=True)
    first.set_epoch(2)
    iterator = iter(first)
    for _ in range(consumed):
        next(iterator)
    state = first.state_dict()
    assert state["batches_consumed"] == consumed and state["epoch"] == 2
    resumed = _loader(index, rank=1, world=2, workers=2, train=True)
    resumed.load_state_dict(state)
    rest = [(b["ids"], b["features"]) for b in resumed]
    assert [ids for ids, _ in rest] == [ids for ids, _ in reference[consumed:]]
    for (_, a), (_, b) in zip(rest, reference[consumed:]):
        assert torch.equal(a, b)  # crops and SpecAugment masks seeded by clip id
    nxt = _loader(index, rank=1, world=2, workers=2, train=True)
    nxt.load_state_dict(state)
    nxt.set_epoch(3)  # the skip applied to epoch 2 only
    assert len(_ids(nxt)) == len(nxt)
    # the skip is for one pass: iterating epoch 2 again gives all of it
    assert _ids(resumed) == [ids for ids, _ in reference]
    # a state taken after set_epoch of the next epoch is at that epoch's start (through
    # set_loader_epoch, as the training loop sets it)
    from alp_data.loader import set_loader_epoch

    set_loader_epoch(resumed, 3)
    assert resumed.state_dict()["epoch"] == 3
    assert resumed.state_dict()["batches_consumed"] == 0


def test_resume_refuses_a_different_split(demo):
    state = _loader(demo["index"], world=2, workers=2).state_dict()
    with pytest.raises(DataError, match="num_workers was 2, is 1"):
        _loader(demo["index"], world=2, workers=1).load_state_dict(state)
    # the batching too: another batch size or buffer cuts the epoch otherwise
    with pytest.raises(DataError, match="batch_size was 4, is 3"):
        _loader(demo["index"], world=2, workers=2, batch=3).load_state_dict(state)
    with pytest.raises(DataError, match="shuffle_buffer was .*, is 7"):
        _loader(demo["index"], world=2, workers=2, shuffle_buffer=7).load_state_dict(state)
    older = {k: v for k, v in state.items() if k not in ("batch_size", "shuffle_buffer")}
    _loader(demo["index"], world=2, workers=2).load_state_dict(older)  # an older state


def test_stream_and_map_style_give_the_same_features_for_a_clip(demo):
    entries = demo["entries"]
    transform_args = {"audio": AudioConfig(max_seconds=1.0), "train": True, "seed": 3,
                      "spec_augment": SpecAugment()}
    dataset = AudioCaptionDataset(entries, **transform_args)
    dataset.set_epoch(4)
    by_id = {entries[i].id: dataset[i] for i in range(len(entries))}
    loader = build_stream_loader(demo["index"], ClipTransform(**transform_args), Collator(),
                                 plan=PlanConfig(batch_size=5, seed=3))
    loader.set_epoch(4)
    for batch in loader:
        for row, ident in enumerate(batch["ids"]):
            item = by_id[ident]
            n = item["num_frames"]
            assert batch["feature_lengths"][row] == n
            assert torch.equal(batch["features"][row, :n], item["features"])
            assert batch["captions"][row] == item["caption"]


def test_windows_of_a_file_give_the_same_audio_from_files_and_from_shards(tmp_path):
    # a window that starts at 0 s was decoded whole from files (8 s here) but cut to its
    # 3 s in shards; a duration rounded within the tolerance is the whole file in both
    rate = 16000
    noise = np.random.default_rng(1).standard_normal(8 * rate) * 0.1
    sf.write(tmp_path / "song.wav", noise.astype(np.float32), rate, subtype="PCM_16")
    sf.write(tmp_path / "short.wav", noise[: 2 * rate].astype(np.float32), rate,
             subtype="PCM_16")
    song = str(tmp_path / "song.wav")
    entries = [ManifestEntry("w0", song, 3.0, rate, ("a",)),
               ManifestEntry("w3", song, 3.0, rate, ("b",), offset=3.0),
               ManifestEntry("whole", str(tmp_path / "short.wav"), 1.98, rate, ("c",))]
    samples = sf.read(song, dtype="float32")[0]
    expected = {"w0": samples[: 3 * rate], "w3": samples[3 * rate: 6 * rate],
                "whole": sf.read(tmp_path / "short.wav", dtype="float32")[0]}
    transform = ClipTransform(audio=AudioConfig(max_seconds=30.0), train=False)
    dataset = AudioCaptionDataset(entries, audio=AudioConfig(max_seconds=30.0), train=False)
    from_files = {e.id: dataset[i] for i, e in enumerate(entries)}
    for ident, item in from_files.items():
        assert item["num_frames"] == transform.fbank.num_frames(len(expected[ident])), ident
    report = write_shards(entries, str(tmp_path / "shards"))
    loader = build_stream_loader(report.index, transform, Collator(),
                                 plan=PlanConfig(batch_size=3, shuffle=False))
    (batch,) = list(loader)
    for row, ident in enumerate(batch["ids"]):
        n = from_files[ident]["num_frames"]
        assert batch["feature_lengths"][row] == n
        assert torch.equal(batch["features"][row, :n], from_files[ident]["features"])


def test_duration_buckets_on_a_stream(demo):
    index = demo["index"]
    budget = 6.0
    seen, counts = [], []
    for rank in range(2):
        loader = _loader(index, rank=rank, world=2, workers=2, batch=16,
                         max_batch_seconds=budget, shuffle_buffer=12)
        plan = loader.dataset.plan(0)
        durations = plan.durations
        for batch in plan.batches(rank):
            assert len(batch) == 1 or durations[batch].max() * len(batch) <= budget
        batches = [b for b in loader]
        counts.append(len(batches))
        for batch in batches:
            seconds = batch["feature_lengths"].float() / 100
            assert float(seconds.max()) * len(batch["ids"]) <= budget + 0.05 * len(batch["ids"])
        seen += [i for b in batches for i in b["ids"]]
    assert sorted(seen) == sorted(e.id for e in demo["entries"])
    assert counts[0] == counts[1]
    fixed = _loader(index, batch=16)
    assert len(fixed) < counts[0] + counts[1]  # buckets hold fewer, similar-length clips


def test_drop_last_keeps_equal_full_batches(demo):
    counts = []
    for rank in range(3):
        loader = _loader(index := demo["index"], rank=rank, world=3, workers=2, batch=4,
                         drop_last=True)
        sizes = [len(b) for b in _ids(loader)]
        assert set(sizes) == {4}
        counts.append(len(sizes))
    assert len(set(counts)) == 1 and counts[0] * 3 * 4 <= index.clips


# -- damage --------------------------------------------------------------------------------
def test_damaged_and_missing_shards_become_counted_bad_clips(demo, tmp_path):
    report = write_shards(demo["entries"][:20], str(tmp_path / "s"), max_clips_per_shard=5)
    urls = [Path(s.url) for s in report.index.shards]
    data = urls[0].read_bytes()
    urls[0].write_bytes(data[: len(data) // 2])  # truncated mid-member
    urls[1].unlink()  # a missing shard
    with tarfile.open(urls[2]) as tar:  # one record with invalid JSON
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(urls[2], "w") as tar:
        for member, payload in members:
            if member.name.endswith("_000002.json"):
                payload = b"{not json"
                member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    loader = _loader(read_index(str(tmp_path / "s")), batch=3, workers=2)
    good, bad = [], []
    for batch in loader:
        good += batch["ids"]
        bad += batch["skipped"]
    assert len(good) + len(bad) == 20
    assert len(good) == 20 - len(bad) and 6 <= len(bad) <= 9  # 5 missing, 1 JSON, 1-3 cut
    reasons = " | ".join(c.error for c in bad)
    assert "shard not found" in reasons and "json member is invalid" in reasons
    assert "damaged tar" in reasons or "missing" in reasons
    assert all(str(tmp_path) in c.path for c in bad)  # located: shard and member
    assert {c.reason for c in bad} == {"tar_member"}


@pytest.mark.distributed
def test_shards_written_on_a_two_worker_dask_cluster_equal_local_ones(demo, tmp_path):
    pytest.importorskip("distributed")
    report = write_shards(demo["manifest"], str(tmp_path / "dask"), max_clips_per_shard=7,
                          workers=2, backend="dask")
    local = demo["root"] / "shards"
    assert [Path(s.url).read_bytes() for s in report.index.shards] == [
        (local / Path(s.url).name).read_bytes() for s in report.index.shards]
    assert report.index.clips == len(demo["entries"])


class _Unseekable(io.RawIOBase):
    """A read-only byte stream that cannot seek (a pipe, a plain HTTP body)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        return self._inner.readinto(buffer)


@pytest.mark.parametrize("cut", [None, 0.5, 0.93])
def test_mapped_seekable_and_streamed_tars_read_the_same_records(demo, tmp_path, monkeypatch,
                                                                  cut):
    """A local shard is read from a memory map; other URLs through tarfile, in place when the
    handle can seek and in stream mode otherwise: all three give the same records, and a
    shard cut short (mid-member, or in its last records) the same damage report, with the
    cut clip itself reported damaged and the clips before it intact."""
    from alp_data.shards import stream, tar

    report = write_shards(demo["entries"][:6], str(tmp_path / "s"), max_clips_per_shard=6)
    url = Path(report.index.shards[0].url)
    if cut is not None:
        url.write_bytes(url.read_bytes()[: int(url.stat().st_size * cut)])

    def records(problem):
        return [(pos, None if audio is None else bytes(audio), meta, where, error.split(" (")[0])
                for pos, audio, meta, where, error in stream._read_shard(str(url), problem)]

    problems: list[dict] = [{}, {}, {}]
    mapped = records(problems[0])
    monkeypatch.setattr(stream, "iter_members", tar._tarfile_members)
    in_place = records(problems[1])
    opened = []
    real_open = tar._open_tar

    def unseekable(handle):
        opened.append(handle)
        return real_open(_Unseekable(handle.read()))

    monkeypatch.setattr(tar, "_open_tar", unseekable)
    streamed = records(problems[2])
    assert opened and mapped == in_place == streamed
    assert [bool(p) for p in problems] == [cut is not None] * 3
    if cut is None:
        assert [r[0] for r in mapped] == list(range(6)) and all(r[1] for r in mapped)
    else:  # clips before the cut are whole; the cut one is damaged; the rest never came
        assert mapped[-1][1] is None and mapped[-1][4] == "damaged tar member"
        assert all(r[1] and not r[4] for r in mapped[:-1])


def _tar_bytes(fmt: int, members: list[tuple[str, bytes | None]]) -> bytes:
    """A tar in ``fmt`` of regular files (data) and folders (None)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("a-link")
        link.type, link.linkname = tarfile.SYMTYPE, "clip_000000.wav"
        tar.addfile(link)
    return out.getvalue()


def _members(reader, path) -> tuple[list[tuple[str, bytes | str]], str]:
    got: list[tuple[str, bytes | str]] = []
    try:
        for name, data in reader(str(path)):
            got.append((name, f"cut: {data}" if isinstance(data, Exception) else bytes(data)))
    except tarfile.ReadError as err:
        return got, f"ReadError: {err}"
    return got, ""


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_the_mapped_tar_reader_gives_what_tarfile_gives(tmp_path, fmt):
    """Local shards are read from a memory map by alp-data's own header reader: every
    member, name and byte as tarfile gives them, in each tar format (long and non-ASCII
    names, ustar prefixes, pax records, folders and links skipped), and the same damage
    report for shards cut anywhere."""
    from alp_data.shards.tar import _tarfile_members, iter_members

    rng = np.random.default_rng(fmt)
    members: list[tuple[str, bytes | None]] = [("folder", None)]
    for i in range(5):
        size = int(rng.integers(0, 3000)) if i != 2 else 512  # one exactly a block long
        members.append((f"clip_{i:06d}.wav", rng.bytes(size)))
        members.append((f"clip_{i:06d}.json", b'{"id": "%d"}' % i))
    if fmt != tarfile.USTAR_FORMAT:  # longer than ustar allows in one field, non-ASCII
        members.append(("d/" + "é" * 60 + "/" + "n" * 120 + ".wav", b"long"))
    else:
        members.append(("p" * 90 + "/" + "n" * 90 + ".wav", b"prefixed"))
    data = _tar_bytes(fmt, members)
    path = tmp_path / "s.tar"
    path.write_bytes(data)
    expected = [(n, d) for n, d in members if d is not None]
    assert _members(iter_members, path) == _members(_tarfile_members, path) == (expected, "")

    cuts = {len(data) // 2, len(data) - 1100, 512 * 3, 512 * 3 + 100, 700, 100, 1}
    for cut in sorted(cuts):
        path.write_bytes(data[:cut])
        assert _members(iter_members, path) == _members(_tarfile_members, path), cut
    path.write_bytes(data[:1024] + b"\x07" * 512 + data[1536:])  # a header that is garbage
    assert _members(iter_members, path) == _members(_tarfile_members, path)
    path.write_bytes(b"")
    assert _members(iter_members, path) == _members(_tarfile_members, path)


@pytest.mark.parametrize("checksum", ["unsigned", "signed", "wrong"])
def test_header_checksums_as_tarfile_reads_them(tmp_path, checksum):
    """A header's checksum over unsigned bytes (POSIX) or signed ones (old tars) is accepted
    by the mapped reader as by tarfile; a wrong one is an error for the first header."""
    from alp_data.shards import tar

    path = tmp_path / "s.tar"
    path.write_bytes(_tar_bytes(tarfile.GNU_FORMAT, [("\u00e9t\u00e9.wav", b"abc"),
                                                     ("\u00e9t\u00e9.json", b"{}")]))
    data = bytearray(path.read_bytes())
    body = bytes(data[:148]) + b" " * 8 + bytes(data[156:512])
    value = {"unsigned": sum(body),
             "signed": sum(b - 256 if b > 127 else b for b in body),
             "wrong": sum(body) + 1}[checksum]
    assert any(b > 127 for b in body)  # the UTF-8 name: the two sums differ
    data[148:156] = b"%06o\x00 " % value
    path.write_bytes(bytes(data))
    got, expected = _members(tar.iter_members, path), _members(tar._tarfile_members, path)
    if checksum == "wrong":
        with pytest.raises(tarfile.ReadError), tarfile.open(path) as bad:
            bad.getmembers()
        assert got[0] == [] and "checksum" in got[1]
    else:
        assert got == expected and [name for name, _ in got[0]] == ["\u00e9t\u00e9.wav",
                                                                   "\u00e9t\u00e9.json"]


def test_a_member_type_the_mapped_reader_cannot_read_goes_to_tarfile(tmp_path, monkeypatch):
    """A GNU sparse member (whose data the mapped reader does not lay out) sends the shard
    through tarfile when it comes first, and is reported as damage after other members."""
    from alp_data.shards import tar

    path = tmp_path / "s.tar"
    path.write_bytes(_tar_bytes(tarfile.GNU_FORMAT, [("a.wav", b"abc"), ("a.json", b"{}")]))
    data = bytearray(path.read_bytes())
    data[156:157] = b"S"  # the first member becomes "sparse", its checksum made right again
    data[148:156] = b"%06o\x00 " % (sum(data[:148]) + 8 * ord(" ") + sum(data[156:512]))
    path.write_bytes(bytes(data))
    handed = []
    monkeypatch.setattr(tar, "_tarfile_members",
                        lambda url: handed.append(url) or iter([("from", b"tarfile")]))
    assert _members(tar.iter_members, path) == ([("from", b"tarfile")], "")
    assert handed == [str(path)]

    def sparse_second(view):
        yield "a.wav", view[:3]
        raise tar._Unsupported(b"S")

    monkeypatch.setattr(tar, "_walk", sparse_second)
    got, error = _members(tar.iter_members, path)
    assert got == [("a.wav", bytes(data[:3]))]
    assert error == "ReadError: unsupported tar member after 1 members" and len(handed) == 1


def test_bucketed_plan_with_drop_last_reads_the_longest_clips_too():
    """Each shuffle window is sorted by duration and packed; drop_last dropped the window's
    last batch even when full, and that batch always held its longest clips: over 50 epochs
    the 8 longest of 40 clips were never read."""
    from alp_data.shards.index import ShardIndex, ShardInfo

    rng = np.random.default_rng(0)
    durs = [float(d) for d in rng.uniform(1, 10, 40)]
    index = ShardIndex([ShardInfo(url=f"s{i}.tar", clips=10, seconds=sum(durs[i * 10:i * 10 + 10]),
                                  bytes=1, durations=tuple(durs[i * 10:i * 10 + 10]))
                        for i in range(4)])
    reads = np.zeros(40, dtype=int)
    for epoch in range(20):
        plan = EpochPlan(index, PlanConfig(batch_size=4, max_batch_seconds=1000.0,
                                           shuffle_buffer=8, drop_last=True), epoch)
        batches = plan.batches(0)
        assert [len(b) for b in batches] == [4] * 10  # every window: two full batches
        for batch in batches:
            for position in batch:
                shard, local = plan.locate(int(position))
                reads[shard * 10 + local] += 1
    assert reads.tolist() == [20] * 40
    # a window's last batch that could take another clip is still dropped
    odd = EpochPlan(index, PlanConfig(batch_size=3, max_batch_seconds=1000.0,
                                      shuffle_buffer=8, drop_last=True), 0)
    assert all(len(b) == 3 for b in odd.batches(0))


def test_a_shard_whose_fsspec_backend_is_missing_becomes_counted_bad_clips(demo, tmp_path):
    """An index naming s3:// shards without s3fs installed: its clips are skipped and
    counted with the reason, the credentials in the URL scrubbed (it raised ImportError)."""
    pytest.importorskip("fsspec")
    try:
        import s3fs  # noqa: F401
        pytest.skip("s3fs is installed: the backend is not missing")
    except ImportError:
        pass
    report = write_shards(demo["entries"][:8], str(tmp_path / "s"), max_clips_per_shard=4)
    raw = json.loads((tmp_path / "s" / "index.json").read_text())
    raw["shards"][0]["url"] = "s3://AKIAKEY:TOPSECRET@bucket/shard-000000.tar"
    (tmp_path / "s" / "index.json").write_text(json.dumps(raw))
    assert report.index.clips == 8
    good, bad = [], []
    for batch in _loader(read_index(str(tmp_path / "s")), batch=4):
        good += batch["ids"]
        bad += batch["skipped"]
    assert len(good) == 4 and len(bad) == 4
    assert all("fsspec backend is not installed" in c.error for c in bad)
    assert not any("TOPSECRET" in c.error or "TOPSECRET" in c.path for c in bad)


def test_a_float_segment_is_stored_without_clipping_and_a_nan_one_is_a_bad_clip(tmp_path):
    """Segments are re-encoded: a float file's segment with peaks past 1 was clipped into a
    FLAC (features off by up to 23), and one holding NaN stopped the whole write."""
    rate = 16000
    loud = (1.8 * np.sin(np.arange(3 * rate) / 10)).astype(np.float32)
    sf.write(tmp_path / "loud.wav", loud, rate, subtype="FLOAT")
    broken = loud.copy()
    broken[int(1.2 * rate)] = np.nan
    sf.write(tmp_path / "nan.wav", broken, rate, subtype="FLOAT")
    entries = [ManifestEntry("loud", str(tmp_path / "loud.wav"), 1.5, rate, ("a",), offset=1.0),
               ManifestEntry("nan", str(tmp_path / "nan.wav"), 1.5, rate, ("b",), offset=1.0)]
    report = write_shards(entries, str(tmp_path / "out"), max_missing=0.5)
    assert [s["id"] for s in report.skipped] == ["nan"]
    assert "non-finite samples" in report.skipped[0]["error"]
    with tarfile.open(report.index.shards[0].url) as tar:
        (audio,) = [n for n in tar.getnames() if not n.endswith(".json")]
        got, _ = sf.read(io.BytesIO(tar.extractfile(audio).read()), dtype="float32")
    assert audio.endswith(".wav")
    assert np.array_equal(got, loud[rate:rate + int(1.5 * rate)])  # lossless, not clipped
    stream = _loader(report.index, batch=1)
    from_files = AudioCaptionDataset(entries[:1], train=False)[0]["features"]
    assert torch.equal(next(iter(stream))["features"][0], from_files)


def test_a_write_that_fails_midway_leaves_no_index_of_older_shards(demo, tmp_path, monkeypatch):
    """Writing over an earlier shard set: the old index is removed first and the new one is
    renamed into place only at the end, so a failure cannot leave an index that describes
    a mix of old and new shards (one epoch then read clips twice, with no error)."""
    import alp_data.shards.writer as writer

    out = tmp_path / "s"
    write_shards(demo["entries"][:12], str(out), max_clips_per_shard=4, seed=0)
    assert (out / "index.json").is_file()
    real, calls = writer._audio_bytes, []

    def fail_late(entry):
        calls.append(entry.id)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        return real(entry)

    monkeypatch.setattr(writer, "_audio_bytes", fail_late)
    with pytest.raises(OSError, match="No space left"):
        write_shards(demo["entries"][:12], str(out), max_clips_per_shard=4, seed=1)
    assert not (out / "index.json").exists()
    for complete in out.glob("shard-*.tar"):  # under a shard's name only whole tars
        with tarfile.open(complete) as tar:
            assert len(tar.getnames()) % 2 == 0
    assert not list(out.glob("*.partial"))  # the failed shard's temporary file is removed
    with pytest.raises(DataError, match="shard index not found"):
        read_index(str(out))


def test_a_tar_cut_in_the_next_header_keeps_the_complete_record_before_it(tmp_path):
    """The cut falls inside record 1's pax header: record 0 is whole and stays a good clip
    (it was reported as a damaged member); record 1 is reported by the caller as missing."""
    import re

    from alp_data.shards.stream import _read_shard

    wav = io.BytesIO()
    sf.write(wav, np.zeros(1600, dtype=np.float32), 16000, format="WAV", subtype="PCM_16")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for pos in range(2):
            for name, data in ((f"000000_{pos:06d}.wav", wav.getvalue()),
                               (f"000000_{pos:06d}.json", json.dumps({"id": f"c{pos}"}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.pax_headers = {"comment": "x" * 600}
                tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    cut = [m.start() for m in re.finditer(b"comment=", raw)][2]  # record 1's first header
    (tmp_path / "cut.tar").write_bytes(raw[:cut + 100])
    problem: dict = {}
    records = list(_read_shard(str(tmp_path / "cut.tar"), problem))
    assert [(pos, audio is not None, meta, error) for pos, audio, meta, _, error in records] == [
        (0, True, {"id": "c0"}, "")]
    assert "damaged tar shard" in problem["error"]
