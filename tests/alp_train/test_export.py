"""`alp export`: the run's final model by default, a named checkpoint on request."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from alp_core import ConfigError
from alp_train.export import export_weights


def _run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    save_file({"w": torch.full((2,), 12.0)}, str(run / "checkpoint" / "model.safetensors"))
    step = run / "checkpoints" / "step-00000008"
    step.mkdir(parents=True)
    save_file({"w": torch.full((2,), 8.0)}, str(step / "model.safetensors"))
    (step / "progress.json").write_text(json.dumps({"step": 8}))
    return run


def test_the_default_is_the_final_model_not_the_newest_training_checkpoint(tmp_path):
    # a run whose last training checkpoint (step 8) came before its end (step 12) exported
    # the step-8 weights under --out and the final ones under --pretrained
    run = _run(tmp_path)
    out = export_weights(run, tmp_path / "final.safetensors")
    assert load_file(str(out))["w"].tolist() == [12.0, 12.0]
    named = export_weights(run, tmp_path / "s8.safetensors", "step-00000008")
    assert load_file(str(named))["w"].tolist() == [8.0, 8.0]
    (run / "checkpoint" / "model.safetensors").unlink()  # not finished: the newest checkpoint
    assert load_file(str(export_weights(run, tmp_path / "n.safetensors")))["w"][0] == 8.0


def test_nothing_to_export_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no final model under .* and no checkpoint"):
        export_weights(tmp_path / "empty", tmp_path / "x.safetensors")
