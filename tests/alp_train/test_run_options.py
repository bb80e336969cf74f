"""One real run with the observability and precision options on: bf16 autocast, gradient
accumulation, TensorBoard with the JSONL keys, periodic validation keeping the best weights."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus_cache, alp):
    pytest.importorskip("tensorboard")
    out = tmp_path_factory.mktemp("options") / "run"
    done = alp.run(alp.SMOKE, f"output_dir={out}", f"data.cache_dir={corpus_cache}", *alp.FAST,
                   "train.epochs=4", "train.precision=bf16", "train.grad_accum_steps=2",
                   "train.tensorboard=true", "train.validate_every=4", "data.batch_size=4")
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _records(run_dir):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_accumulation_counts_optimizer_steps(run_dir):
    train = [r for r in _records(run_dir) if r["event"] == "train"]
    # 65 clips / batch 4 = 16 micro-batches an epoch -> 8 optimizer steps, 4 epochs
    assert [r["step"] for r in train] == list(range(1, 33))
    assert all(r["samples"] == 8 * r["step"] for r in train)


def test_validation_is_logged_and_the_best_weights_kept(run_dir):
    val = [r for r in _records(run_dir) if r["event"] == "validation"]
    assert [r["step"] for r in val] == [4, 8, 12, 16, 20, 24, 28, 32]
    best = min(r["val_loss"] for r in val)
    assert val[0]["best"] is True
    flagged = [r for r in val if r["best"]]
    assert flagged[-1]["val_loss"] == best  # the last improvement is the minimum
    assert all(b["val_loss"] < a["val_loss"] for a, b in zip(flagged, flagged[1:]))
    meta = json.loads((run_dir / "best" / "checkpoint.json").read_text())
    assert meta["state"]["step"] == flagged[-1]["step"]
    assert load_file(str(run_dir / "best" / "model.safetensors"))


def test_tensorboard_has_the_jsonl_keys(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "validation/val_loss"} <= tags
    logged = {r["step"]: r["loss"] for r in _records(run_dir) if r["event"] == "train"}
    for event in acc.Scalars("train/loss"):
        assert event.value == pytest.approx(logged[event.step], rel=1e-6)


def test_spec_augment_options_reach_the_training_transform(tmp_path):
    # data.spec_augment took a config, but no test checked that it got to the transform
    from alp_data.features import SpecAugmentConfig
    from alp_train.config import resolve_run
    from alp_train.distributed import DistInfo
    from alp_train.recipe import setup_data, setup_model

    raw = {"data": {"source": {"name": "demo", "num_clips": 12, "min_seconds": 0.5,
                               "max_seconds": 0.6},
                    "cache_dir": str(tmp_path), "num_workers": 0,
                    "spec_augment": {"num_frame_masks": 3, "frames_mask_size": 7, "p": 1.0}}}
    resolved = resolve_run(raw)
    model, _ = setup_model(resolved)
    data = setup_data(resolved, DistInfo(), model)
    loader = data.loader(resolved.config, "train", DistInfo(), train=True, batch_size=4,
                         sharded=True)
    augment = loader.dataset.transform.spec_augment
    assert augment.config == SpecAugmentConfig(num_frame_masks=3, frames_mask_size=7, p=1.0)
    test = data.loader(resolved.config, "test", DistInfo(), train=False, batch_size=4,
                       sharded=False)
    assert test.dataset.transform.spec_augment is None  # evaluation is not augmented
