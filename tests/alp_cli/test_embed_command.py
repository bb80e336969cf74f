"""``alp embed``, ``alp zero-shot`` and ``alp export --pretrained``: rows equal
PretrainedALP's, in the order given; bad files are errors naming them (exit 2)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from tests.shared import TINY_ALP_MODEL

from alp_cli.commands import embed, export, zero_shot
from alp_core import ConfigError
from alp_data.audio import AudioError
from alp_eval.pretrained import PretrainedALP

MODEL = TINY_ALP_MODEL


def _call(module, argv):
    """What ``alp`` does with a command module: a parser, add_arguments, parse, run."""
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(a) for a in argv]))


@pytest.fixture
def alp():
    """``alp(*argv) -> exit code`` through alp_cli.main (the commands as alp-cli registers them)."""
    import alp_cli.main

    return lambda *argv: alp_cli.main.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pre = PretrainedALP.from_config({"model": MODEL}, seed=2)
    return pre.save_pretrained(tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(scope="module")
def pretrained(folder):
    return PretrainedALP.from_pretrained(folder)


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    out = []
    for name, seconds, rate in (("a.wav", 1.5, 16000), ("b.flac", 3.0, 44100),
                                ("c.wav", 12.0, 22050)):
        t = np.arange(int(seconds * rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (150 + 60 * len(out)) * t) \
            + 0.05 * rng.standard_normal(t.size)
        sf.write(str(root / name), wave.astype(np.float32), rate)
        out.append(root / name)
    return out


@pytest.mark.parametrize("space", ["joint", "encoder"])
def test_rows_are_embed_audio_in_the_order_given(folder, pretrained, audio, tmp_path, space,
                                                 capsys):
    files = [audio[2], audio[0], audio[1], audio[0]]
    out = tmp_path / "emb.npy"
    assert _call(embed, [folder, *files, "--out", out, "--space", space,
                         "--batch-size", "2"]) == 0
    rows = np.load(out)
    assert rows.dtype == np.float32 and rows.shape == (4, 24 if space == "joint" else 32)
    want = pretrained.embed_audio(files, space=space)
    np.testing.assert_allclose(rows, want.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_array_equal(rows[1], rows[3])  # the same file twice
    assert (tmp_path / "emb.files.txt").read_text().splitlines() == [str(f) for f in files]
    assert not (tmp_path / "emb.skipped.txt").exists()
    assert f"wrote {out}: 4 x {rows.shape[1]}" in capsys.readouterr().out


def test_window_options_reach_embed_audio(folder, pretrained, audio, tmp_path):
    out = tmp_path / "w.npy"
    assert _call(embed, [folder, audio[2], "--out", out, "--window-seconds", "4",
                         "--hop-seconds", "2"]) == 0
    want = pretrained.embed_audio([audio[2]], window_seconds=4.0, hop_seconds=2.0)
    np.testing.assert_allclose(np.load(out), want.numpy(), atol=1e-6, rtol=0)
    assert not np.allclose(np.load(out), pretrained.embed_audio([audio[2]]).numpy(), atol=1e-4)


def test_a_missing_file_is_an_error_naming_it(folder, audio, tmp_path, alp, capsys):
    out = tmp_path / "x.npy"
    gone = tmp_path / "gone.wav"
    with pytest.raises(AudioError, match=r"gone\.wav"):
        _call(embed, [folder, audio[0], gone, "--out", out])
    assert not out.exists() and not list(tmp_path.glob("x.npy*"))
    assert alp("embed", folder, audio[0], gone, "--out", out) == 2
    err = capsys.readouterr().err
    assert "alp embed: error" in err and str(gone) in err
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"RIFF not really audio")
    assert alp("embed", folder, bad, "--out", out) == 2
    assert str(bad) in capsys.readouterr().err and not out.exists()


def test_skip_bad_writes_nan_rows_and_lists_them(folder, pretrained, audio, tmp_path, capsys):
    gone, bad = tmp_path / "gone.wav", tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really audio")
    out = tmp_path / "s.npy"
    files = [audio[0], gone, audio[1], bad]
    assert _call(embed, [folder, *files, "--out", out, "--skip-bad"]) == 0
    rows = np.load(out)
    assert np.isnan(rows[[1, 3]]).all() and np.isfinite(rows[[0, 2]]).all()
    want = pretrained.embed_audio([audio[0], audio[1]])
    np.testing.assert_allclose(rows[[0, 2]], want.numpy(), atol=1e-6, rtol=0)
    listed = (tmp_path / "s.skipped.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in listed] == [str(gone), str(bad)]
    err = capsys.readouterr().err
    assert "skipped 2 of 4 files" in err and str(gone) in err and str(bad) in err


def test_embed_argument_errors(folder, audio, tmp_path):
    with pytest.raises(ConfigError, match=r"expected a \.npy file"):
        _call(embed, [folder, audio[0], "--out", tmp_path / "x.csv"])
    with pytest.raises(ConfigError, match=r"nowhere.*no such file or folder"):
        _call(embed, [tmp_path / "nowhere", audio[0], "--out", tmp_path / "x.npy"])


def test_zero_shot_prints_probabilities_of_pretrained_zero_shot(folder, pretrained, audio,
                                                                capsys):
    labels = ["dog", "rain", "violin"]
    templates = ["the sound of {label}", "{label}"]
    argv = [folder, audio[0], audio[2], "--labels", "dog, rain,violin"]
    for t in templates:
        argv += ["--template", t]
    assert _call(zero_shot, [*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    probs, predicted = pretrained.zero_shot([audio[0], audio[2]], labels, templates)
    assert data["labels"] == labels and data["templates"] == templates
    for row, item, best, path in zip(probs, data["results"], predicted, (audio[0], audio[2]),
                                     strict=True):
        assert item["file"] == str(path) and item["label"] == best
        got = torch.tensor([item["probabilities"][k] for k in labels])
        torch.testing.assert_close(got, row, atol=1e-6, rtol=0)
        assert item["top"][0]["label"] == best
    assert _call(zero_shot, [*argv, "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{audio[0]}: {predicted[0]} ")
    assert lines[0].count(",") == 1  # two labels shown


def test_zero_shot_errors(folder, audio, tmp_path, alp, capsys):
    assert alp("zero-shot", folder, audio[0], "--labels", "dog") == 2
    assert "at least two comma-separated labels" in capsys.readouterr().err
    assert alp("zero-shot", folder, tmp_path / "gone.wav", "--labels", "dog,cat") == 2
    assert "gone.wav" in capsys.readouterr().err
    assert alp("zero-shot", folder, audio[0], "--labels", "dog,cat", "--template",
               "a {animal}") == 2
    assert "{animal}" in capsys.readouterr().err


def test_export_pretrained_from_a_run_folder(tmp_path, audio, capsys):
    from alp_train.checkpoint import save_model
    from alp_train.config import resolve_run
    from alp_train.recipe import setup_model
    from alp_train.task import TrainTask

    resolved = resolve_run({"name": "cli-run", "model": MODEL})
    model, objective = setup_model(resolved)
    run_dir = tmp_path / "run"
    save_model(run_dir / "checkpoint", TrainTask(model, objective).state_dict(),
               {"config": resolved.dump(), "state": {"step": 3, "epoch": 1}})
    assert _call(export, [run_dir, "--pretrained", tmp_path / "pre"]) == 0
    assert "wrote" in capsys.readouterr().out
    from_run = PretrainedALP.from_pretrained(run_dir)
    exported = PretrainedALP.from_pretrained(tmp_path / "pre")
    assert exported.fingerprint == from_run.fingerprint
    assert torch.equal(exported.embed_audio([audio[0]]), from_run.embed_audio([audio[0]]))
    assert "cli-run" in (tmp_path / "pre" / "README.md").read_text()
    with pytest.raises(ConfigError, match="--out FILE.safetensors and/or --pretrained"):
        _call(export, [run_dir])
