"""lhotse interop: ALP manifest -> CutSet -> ALP manifest, and importing CaptionStew-style cuts."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from alp_core.errors import DataError
from alp_data.manifest import ManifestEntry, read_manifest, write_manifest
from alp_data.recipes.lhotse_io import LhotseConfig, LhotseSource, export_cutset

lhotse = pytest.importorskip("lhotse")


def _audio(path, seconds, rate=16000, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.random.default_rng(0).uniform(-0.1, 0.1, (int(seconds * rate), channels))
    sf.write(str(path), data.astype("float32"), rate)


def test_round_trip_keeps_ids_captions_durations_offsets_and_audio(tmp_path):
    _audio(tmp_path / "audio/a.wav", 2.0)
    _audio(tmp_path / "audio/b.wav", 1.0, rate=8000, channels=2)
    entries = [
        ManifestEntry(id="a", audio=str(tmp_path / "audio/a.wav"), duration=1.5,
                      sample_rate=16000, captions=("a dog barks", "barking"), offset=0.5,
                      channels=1, split="train", labels={"corpus_split": "dev"}),
        ManifestEntry(id="b", audio=str(tmp_path / "audio/b.wav"), duration=1.0,
                      sample_rate=8000, captions=("rain",), channels=2, split="test"),
    ]
    write_manifest(tmp_path / "m.jsonl", entries)
    out = export_cutset(tmp_path / "m.jsonl", tmp_path / "cuts_train.jsonl.gz")
    cuts = {c.id: c for c in lhotse.CutSet.from_file(out)}
    cut = cuts["a"]
    assert isinstance(cut, lhotse.MonoCut) and cut.start == 0.5 and cut.duration == 1.5
    assert cut.supervisions[0].custom["caption"] == ["a dog barks", "barking"]
    assert cut.recording.sources[0].source == str(tmp_path / "audio/a.wav")
    assert cut.load_audio().shape == (1, 24000)  # lhotse reads the same segment
    source = LhotseSource(LhotseConfig(root=str(tmp_path), corpus="demo", domain="sound"))
    paths = source.prepare(tmp_path / "back")
    train, test = read_manifest(paths["train"]), read_manifest(paths["test"])
    back = {e.id: e for e in (*train, *test)}
    assert [e.id for e in train] == ["a"] and [e.id for e in test] == ["b"]
    for e in entries:
        got = back[e.id]
        assert got.captions == e.captions and got.audio == e.audio
        assert (got.offset, got.duration, got.sample_rate) == (e.offset, e.duration,
                                                                e.sample_rate)
        assert got.labels == e.labels and got.corpus == "demo" and got.domain == "sound"
    assert back["b"].channels == 2


def test_imports_captionstew_cuts_with_relative_paths_and_missing_budget(tmp_path):
    _audio(tmp_path / "wav/x.wav", 3.0)
    cuts = []
    for ident in ("x", "gone"):
        rec = lhotse.Recording(
            id=ident, sources=[lhotse.audio.AudioSource("file", [0], f"wav/{ident}.wav")],
            sampling_rate=16000, num_samples=48000, duration=3.0)
        sup = lhotse.SupervisionSegment(id=ident, recording_id=ident, start=0, duration=2.0,
                                        custom={"caption": [f"{ident} one", f"{ident} two"]})
        cuts.append(lhotse.MonoCut(id=ident, start=1.0, duration=2.0, channel=0,
                                   recording=rec, supervisions=[sup]))
    lhotse.CutSet.from_cuts(cuts).to_file(str(tmp_path / "cuts_train.jsonl.gz"))
    with pytest.raises(DataError, match=r"1 of 2 clips.*wav/gone.wav"):
        LhotseSource(LhotseConfig(root=str(tmp_path), max_missing=0)).prepare(tmp_path / "s")
    src = LhotseSource(LhotseConfig(root=str(tmp_path), max_missing=0.5))
    entry, = read_manifest(src.prepare(tmp_path / "o")["train"])
    assert entry.id == "x" and entry.captions == ("x one", "x two")
    assert (entry.offset, entry.duration) == (1.0, 2.0)
    assert entry.audio == str(tmp_path / "wav/x.wav") and entry.corpus == "lhotse"


def test_cut_without_captions_is_named(tmp_path):
    _audio(tmp_path / "x.wav", 1.0)
    rec = lhotse.Recording.from_file(str(tmp_path / "x.wav"))
    cut = rec.to_cut()
    lhotse.CutSet.from_cuts([cut]).to_file(str(tmp_path / "cuts_train.jsonl.gz"))
    with pytest.raises(DataError, match=rf"cut {cut.id}: no supervision"):
        LhotseSource(LhotseConfig(root=str(tmp_path))).prepare(tmp_path / "o")
