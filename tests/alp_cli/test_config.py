"""Run-config validation: unknown keys, wrong values and unknown components are caught up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from alp_cli.commands.run import load_run_config
from alp_cli.overrides import apply_overrides, parse_override
from alp_core import ConfigError, UnknownComponentError
from alp_train.config import resolve_run

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_embedded_default_resolves_with_every_component():
    resolved = resolve_run({})
    dump = resolved.dump()
    assert dump["data"]["source"]["name"] == "demo"
    assert dump["model"]["audio_encoder"]["name"] == "transformer"
    assert dump["model"]["audio_encoder"]["ffn_dim"] == 512
    assert dump["model"]["audio_encoder"]["dropout"] == 0.1  # component defaults filled in
    assert [t["name"] for t in dump["eval"]["tasks"]] == ["linear-probe", "retrieval", "zero-shot",
                                                          "captioning"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates_and_names_its_command(path):
    assert path.read_text().splitlines()[0] == f"# alp run configs/{path.name}"
    resolve_run(load_run_config(str(path), []))


def test_default_yaml_is_the_embedded_default():
    shipped = resolve_run(load_run_config("configs/default.yaml", [])).dump()
    assert shipped == resolve_run({}).dump()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"epocs": 1}}, "train.epocs: unknown key (accepted keys: "),
        ({"train": {"epochs": -1}}, "train.epochs"),
        ({"train": {"device": "tpu"}}, "'auto', 'cpu' or 'cuda'"),
        ({"model": {"audio_encoder": {"name": "transformer", "d_modle": 8}}},
         "model.audio_encoder.d_modle: unknown key"),
        ({"model": {"audio_encoder": {"name": "transformer", "num_layers": "many"}}},
         "model.audio_encoder.num_layers"),
        ({"objective": "infonce"}, "objective: Input should be a valid dictionary"),
        ({"objective": {"name": 7}}, "objective: expected a mapping with a 'name' key"),
        ({"data": {"source": {"name": "demo", "num_clips": 0}}}, "data.source.num_clips"),
        ({"eval": {"tasks": [{"name": "retrieval"}, {"name": "retrieval"}]}}, "listed twice"),
    ],
)
def test_bad_config_names_the_key(raw, expected):
    with pytest.raises(ConfigError) as err:
        resolve_run(raw)
    assert expected in str(err.value)


def test_unknown_component_lists_valid_choices():
    with pytest.raises(UnknownComponentError) as err:
        resolve_run({"model": {"text_encoder": {"name": "roberta"}}})
    msg = str(err.value)
    assert "model.text_encoder.name" in msg and "roberta" in msg
    assert "bert" in msg and "minilm" in msg
    with pytest.raises(ConfigError, match="infonce"):
        resolve_run({"objective": {"name": "clip"}})


def test_overrides_parse_yaml_values_and_nest():
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("eval.baseline=false") == (["eval", "baseline"], False)
    cfg = apply_overrides({"train": {"lr": 1.0}}, ["train.epochs=2", "model.embed_dim=64"])
    assert cfg == {"train": {"lr": 1.0, "epochs": 2}, "model": {"embed_dim": 64}}
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("train.epochs")
    with pytest.raises(ConfigError, match="train.lr is a float"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=1"])


def test_overrides_without_config_file_and_missing_file(tmp_path):
    assert load_run_config("train.epochs=1", ["seed=3"]) == {"train": {"epochs": 1}, "seed": 3}
    with pytest.raises(ConfigError, match="does not exist"):
        load_run_config(str(tmp_path / "nope.yaml"), [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_run_config(str(bad), [])


def test_component_options_merge_with_the_default_when_the_component_is_the_same():
    dump = resolve_run({"data": {"source": {"seed": 1}},
                        "model": {"text_encoder": {"name": "bert", "hidden_size": 64}}}).dump()
    assert dump["data"]["source"]["name"] == "demo" and dump["data"]["source"]["seed"] == 1
    text = dump["model"]["text_encoder"]
    default_text = resolve_run({}).dump()["model"]["text_encoder"]
    assert text == {**default_text, "hidden_size": 64}
    assert resolve_run({"objective": {"temperature": 0.1}}).dump()["objective"] == {
        **resolve_run({}).dump()["objective"], "temperature": 0.1}


def test_another_component_starts_from_its_own_defaults():
    text = resolve_run({"model": {"text_encoder": {"name": "minilm"}}}).dump()["model"]
    assert text["text_encoder"] == {"name": "minilm", "max_tokens": 32, "pooling": "mean",
                                    "freeze": False}
    with pytest.raises(ConfigError, match="objective.temperature: unknown key"):
        resolve_run({"objective": {"name": "siglip", "temperature": 0.1}})


def test_overrides_on_the_embedded_default_reach_component_options():
    raw = load_run_config(None, ["data.source.num_clips=50", "objective.name=siglip"])
    dump = resolve_run(raw).dump()
    assert dump["data"]["source"]["num_clips"] == 50 and dump["objective"]["name"] == "siglip"


@pytest.mark.parametrize("objective", [
    {"name": "coca", "contrastive": {"name": "siglip", "learnable": False}},
    {"name": "weighted-sum", "terms": [{"name": "infonce", "weight": 0.5, "label": "clip"},
                                       {"name": "captioning", "label_smoothing": 0.0}]},
])
def test_nested_objectives_are_written_out_whole_and_read_back(objective):
    dump = resolve_run({"objective": objective}).dump()
    inner = (dump["objective"]["contrastive"] if objective["name"] == "coca"
             else dump["objective"]["terms"][0])
    assert "max_logit_scale" in inner  # the inner component's defaults are filled in
    if objective["name"] == "weighted-sum":
        assert inner["weight"] == 0.5 and inner["label"] == "clip"
        assert dump["objective"]["terms"][1]["label_smoothing"] == 0.0
    assert resolve_run(dump).dump() == dump


def test_the_deepspeed_launchers_local_rank_argument_is_accepted():
    # `deepspeed -m alp_cli.main run ...` appends --local_rank=N: the parser refused it
    from alp_cli.main import build_parser

    parser, _ = build_parser()
    args = parser.parse_args(["run", "configs/smoke.yaml", "train.epochs=1", "--local_rank=1"])
    assert args.local_rank == 1 and args.overrides == ["train.epochs=1"]
    # where the launcher really puts it: right after the module, before the command (the
    # multi-process test runs the launcher itself)
    args = parser.parse_args(["--local_rank=1", "run", "configs/smoke.yaml", "train.epochs=1"])
    assert args.command == "run" and args.overrides == ["train.epochs=1"]
