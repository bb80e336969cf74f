"""Pre-run checks (``alp run`` and ``--check``): facts spanning components, before any work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from alp_cli.main import main
from alp_core import ConfigError, reset_plugin_manager
from alp_train.checks import check_run
from alp_train.config import resolve_run

TINY = {"model": {"audio_encoder": {"d_model": 16, "num_layers": 1, "num_heads": 2,
                                    "ffn_dim": 32},
                  "text_encoder": {"hidden_size": 16, "num_layers": 1, "num_heads": 2,
                                   "intermediate_size": 32},
                  "embed_dim": 8},
        "eval": {"tasks": []}}


def config(**sections: Any) -> dict[str, Any]:
    """TINY with ``sections`` laid over it (one level deep per section)."""
    raw = json.loads(json.dumps(TINY))
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def check(raw: dict[str, Any]) -> None:
    check_run(resolve_run(raw))


def test_the_tiny_config_passes():
    check(config())  # the baseline of every failure below


def test_encoder_input_dim_must_match_the_filterbank():
    raw = config(model={"audio_encoder": {**TINY["model"]["audio_encoder"], "input_dim": 40}})
    with pytest.raises(ConfigError) as err:
        check(raw)
    msg = str(err.value)
    assert "model.audio_encoder.input_dim is 40" in msg
    assert "data.fbank.num_mel_bins is 80" in msg
    raw["data"] = {"fbank": {"num_mel_bins": 40}}
    check(raw)  # equal again: fine


def test_audio_and_fbank_sample_rates_must_match():
    with pytest.raises(ConfigError, match=r"data.audio.sample_rate is 8000 but "
                                          r"data.fbank.sample_rate is 16000"):
        check(config(data={"audio": {"sample_rate": 8000}}))


def test_several_processes_need_a_distributed_engine():
    with pytest.raises(ConfigError, match="train.nproc is 2 but train.engine is 'single'"):
        check(config(train={"nproc": 2}))
    check(config(train={"nproc": 2, "engine": {"name": "ddp"}}))


def test_nproc_zero_is_refused_by_the_schema():
    with pytest.raises(ConfigError, match="nproc"):
        resolve_run(config(train={"nproc": 0}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match="'cuda' was asked for but no GPU is visible"):
        check(config(train={"device": "cuda"}))


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 needs a GPU"):
        check(config(train={"precision": "fp16", "device": "cpu"}))
    check(config(train={"precision": "bf16"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_fp16_with_device_auto_and_no_gpu_is_refused_before_any_work():
    # it passed the checks, then failed after the run folder and the data were prepared
    with pytest.raises(ConfigError, match="fp16 needs a GPU .*device=auto"):
        check(config(train={"precision": "fp16", "device": "auto"}))


def _deepspeed(tmp_path: Path, user: dict[str, Any], **train: Any) -> dict[str, Any]:
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(user))
    return config(train={"engine": {"name": "deepspeed", "config_file": str(path)}, **train})


def test_deepspeed_json_conflicting_with_the_run_config_is_an_error(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        check(_deepspeed(tmp_path, {"gradient_accumulation_steps": 4}, grad_accum_steps=1))
    assert "gradient_accumulation_steps = 4" in str(err.value)
    assert "gives 1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        check(_deepspeed(tmp_path, {"gradient_clipping": 0.5}, grad_clip=2.0))
    assert "gradient_clipping = 0.5" in str(err.value) and "gives 2.0" in str(err.value)
    with pytest.raises(ConfigError, match="zero_optimization.stage = 3"):
        check(_deepspeed(tmp_path, {"zero_optimization": {"stage": 3}}))


def test_deepspeed_json_that_only_adds_keys_merges(tmp_path: Path):
    from alp_train.engines.deepspeed_engine import build_deepspeed_config

    raw = _deepspeed(tmp_path, {"gradient_accumulation_steps": 2, "gradient_clipping": 1.0,
                                "zero_optimization": {"reduce_bucket_size": 1000},
                                "train_batch_size": "auto", "comms_logger": {"enabled": False}},
                     grad_accum_steps=2)
    resolved = resolve_run(raw)
    check_run(resolved)
    cfg = resolved.config
    merged = build_deepspeed_config(resolved.engine.config, cfg.train, cfg.data.batch_size, 1)
    assert merged["gradient_accumulation_steps"] == 2
    assert merged["train_batch_size"] == cfg.data.batch_size * 2  # "auto": ours
    assert merged["zero_optimization"]["reduce_bucket_size"] == 1000
    assert merged["zero_optimization"]["stage"] == resolved.engine.config.zero_stage
    assert merged["comms_logger"] == {"enabled": False}


def test_zero3s_linear_is_chosen_by_the_run_or_the_json_but_not_both_ways(tmp_path: Path):
    from alp_train.engines.configs import DeepSpeedEngineConfig
    from alp_train.engines.deepspeed_engine import build_deepspeed_config

    train = resolve_run(config()).config.train

    def zero(**options: Any) -> dict[str, Any]:
        built = build_deepspeed_config(DeepSpeedEngineConfig(**options), train, 4, 2)
        return built["zero_optimization"]

    assert "memory_efficient_linear" not in zero(zero_stage=3)  # DeepSpeed's default holds
    assert zero(zero_stage=3, memory_efficient_linear=False)["memory_efficient_linear"] is False
    with pytest.raises(ConfigError, match="stage 3 option"):
        zero(zero_stage=2, memory_efficient_linear=False)
    raw = _deepspeed(tmp_path, {"zero_optimization": {"memory_efficient_linear": False}})
    raw["train"]["engine"]["zero_stage"] = 3
    check(raw)  # a JSON that sets it, with the run config silent: the JSON's value
    raw["train"]["engine"]["memory_efficient_linear"] = True
    with pytest.raises(ConfigError, match="memory_efficient_linear = False conflicts"):
        check(raw)


def test_deepspeed_json_must_not_choose_the_optimizer(tmp_path: Path):
    with pytest.raises(ConfigError, match="'optimizer'/'scheduler' are chosen by"):
        check(_deepspeed(tmp_path, {"optimizer": {"type": "Adam"}}))


def test_a_misspelled_lazy_factory_of_a_plugin_fails_at_check_time(site):
    site("fake-sched", "fake_sched", """
        from alp_core import LRScheduleRecord, hookimpl
        from alp_train.optim.configs import ConstantConfig

        def build_schedule(config, optimizer):
            raise AssertionError("never built by a check")

        @hookimpl
        def alp_lr_schedules():
            return [LRScheduleRecord("flat", ConstantConfig, "fake_sched:biuld_schedule")]
    """)
    reset_plugin_manager()
    raw = config(train={"schedule": {"name": "flat"}})
    resolved = resolve_run(raw)  # resolving does not import the factory
    with pytest.raises(ConfigError) as err:
        check_run(resolved)
    msg = str(err.value)
    assert msg.startswith("train.schedule: lr_schedule 'flat'")
    assert "fake_sched" in msg and "fake-sched" in msg  # the plugin and its distribution
    assert "'fake_sched:biuld_schedule'" in msg


def test_grad_cache_needs_a_contrastive_objective():
    raw = config(objective={"name": "captioning"}, train={"grad_cache": {"chunk_size": 2}})
    with pytest.raises(ConfigError, match="train.grad_cache: .*'captioning' also reads "
                                          "caption_logits"):
        check(raw)
    check(config(train={"grad_cache": {"chunk_size": 2}}))  # infonce: fine


def test_coca_contrastive_term_must_be_contrastive():
    with pytest.raises(ConfigError, match="'captioning' is not a contrastive objective"):
        check(config(objective={"name": "coca", "contrastive": {"name": "captioning"}}))
    check(config(objective={"name": "coca", "contrastive": {"name": "siglip"}}))


def test_alp_run_check_reports_the_error(capsys):
    code = main(["run", "--check", "eval.tasks=[]", "train.nproc=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.nproc is 2 but train.engine is 'single'" in err


def test_alp_run_check_prints_the_resolved_config(capsys):
    import yaml

    code = main(["run", "--check", "eval.tasks=[]", "train.engine.name=ddp", "train.nproc=2"])
    assert code == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["train"]["engine"]["name"] == "ddp" and out["train"]["nproc"] == 2


def test_a_benchmark_task_in_alp_run_points_to_alp_eval(tmp_path):
    raw = config(eval={"tasks": [{"name": "linear-probe"},
                                 {"name": "esc50", "root": str(tmp_path)}]})
    with pytest.raises(ConfigError, match=r"eval.tasks.1: 'esc50' is a benchmark task .*alp eval"):
        check(raw)


def test_fbank_precision_is_a_run_option_checked_by_name():
    resolved = resolve_run(config(data={"fbank": {"precision": "float64"}}))
    assert resolved.config.data.fbank.precision == "float64"
    check_run(resolved)
    with pytest.raises(ConfigError, match=r"data\.fbank\.precision.*'float32'.*'float64'"):
        resolve_run(config(data={"fbank": {"precision": "float16"}}))


@pytest.mark.parametrize(("given", "kept"), [(True, True), (False, False), ("true", True),
                                             ("regional", "regional"), ("whole", "whole")])
def test_train_compile_takes_a_bool_or_a_way(given, kept):
    assert resolve_run(config(train={"compile": given})).config.train.compile == kept


def test_train_compile_names_its_choices():
    with pytest.raises(ConfigError, match=r"train\.compile.*'whole'.*'regional'"):
        resolve_run(config(train={"compile": "fast"}))


def test_deepspeed_mixed_precision_is_torch_autocast(tmp_path: Path):
    """bf16/fp16 run DeepSpeed's torch_autocast mode (float32 weights, float32 gradient
    reduction unless the JSON names modules); its own bf16/fp16 sections are refused."""
    from alp_train.engines.deepspeed_engine import build_deepspeed_config

    resolved = resolve_run(config(train={"engine": {"name": "deepspeed"}, "precision": "bf16"}))
    cfg = resolved.config
    built = build_deepspeed_config(resolved.engine.config, cfg.train, cfg.data.batch_size, 1)
    assert built["torch_autocast"] == {"enabled": True, "dtype": "bfloat16",
                                       "lower_precision_safe_modules": []}
    assert "bf16" not in built and "fp16" not in built
    fp32 = resolve_run(config(train={"engine": {"name": "deepspeed"}}))
    assert build_deepspeed_config(fp32.engine.config, fp32.config.train, 4, 1)[
        "torch_autocast"]["enabled"] is False
    chosen = ["torch.nn.modules.linear.Linear"]
    resolved = resolve_run(_deepspeed(tmp_path, {"torch_autocast": {
        "lower_precision_safe_modules": chosen}}, precision="bf16"))
    built = build_deepspeed_config(resolved.engine.config, resolved.config.train, 4, 1)
    assert built["torch_autocast"]["lower_precision_safe_modules"] == chosen
    with pytest.raises(ConfigError, match=r"bf16\.enabled.*train\.precision=bf16"):
        check(_deepspeed(tmp_path, {"bf16": {"enabled": True}}, precision="bf16"))


def test_more_local_processes_than_gpus_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    ddp = {"engine": {"name": "ddp"}}
    for device in ("cuda", "auto"):
        with pytest.raises(ConfigError, match=r"train\.nproc: 3 processes .* 2 GPU\(s\)"):
            check(config(train={**ddp, "nproc": 3, "device": device}))
    check(config(train={**ddp, "nproc": 2, "device": "cuda"}))
    check(config(train={**ddp, "nproc": 3, "device": "cpu"}))  # gloo processes on the CPU
    monkeypatch.setenv("RANK", "0")  # started by torchrun: it placed the ranks itself
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "0")
    check(config(train={**ddp, "nproc": 3, "device": "cuda"}))


def test_scaled_adam_with_deepspeed_is_refused_before_any_work():
    pytest.importorskip("deepspeed")
    # ZeRO hands the optimizer flat partitions: it failed at setup, or scaled per group
    with pytest.raises(ConfigError, match="scaled-adam needs each parameter whole"):
        check(config(train={"engine": {"name": "deepspeed"},
                            "optimizer": {"name": "scaled-adam"}}))


def test_a_text_rate_without_a_text_tower_is_refused():
    with pytest.raises(ConfigError, match="train.text_lr: objective 'captioning' builds no "
                                          "text tower"):
        check(config(objective={"name": "captioning"}, train={"text_lr": 1e-5}))
    check(config(train={"text_lr": 1e-5}))


@pytest.mark.parametrize(("optimizer", "match"), [
    ({"name": "scaled-adam", "param_min_rms": 5.0}, "param_min_rms .* below param_max_rms"),
    ({"name": "scaled-adam", "betas": [0.9, 1.0]}, r"betas: .*each beta must be in \[0, 1\)"),
    ({"name": "adamw", "betas": [0.9, 1.5]}, r"betas: .*each beta must be in \[0, 1\)"),
])
def test_optimizer_options_the_optimizer_would_reject_fail_at_check_time(optimizer, match):
    with pytest.raises(ConfigError, match=match):
        resolve_run(config(train={"optimizer": optimizer}))


def test_an_attention_pooler_whose_heads_do_not_divide_the_embedding_is_refused():
    # it passed the checks, then failed inside the model build after the run folder was made
    with pytest.raises(ConfigError, match="model.pooler.num_heads is 3 but model.embed_dim"):
        check(config(model={"pooler": {"name": "attention", "num_heads": 3},
                            "embed_dim": 32}))
    check(config(model={"pooler": {"name": "attention", "num_heads": 4}, "embed_dim": 32}))


def test_init_from_weights_that_are_not_there_are_refused_at_check_time(tmp_path: Path):
    with pytest.raises(ConfigError, match="model.init_from.path: no safetensors weights at"):
        check(config(model={"init_from": {"path": str(tmp_path / "nowhere")}}))


def test_dither_with_features_on_the_device_is_refused():
    with pytest.raises(ConfigError, match="data.fbank.dither is not supported with "
                                          "data.features_on=device"):
        check(config(data={"features_on": "device", "fbank": {"dither": 1.0}}))


def test_deepspeed_not_installed_names_the_extra(monkeypatch):
    import sys

    from alp_train.checks import import_factories

    resolved = resolve_run(config(train={"engine": {"name": "deepspeed"}}))
    import_factories(resolved)  # the other components' modules, imported as usual
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # `import deepspeed` now fails
    with pytest.raises(ConfigError, match=r"'deepspeed' needs the DeepSpeed package.*"
                                          r"pip install 'alp-train\[deepspeed\]'"):
        check_run(resolved)


def test_an_objective_that_reads_nothing_the_model_makes_is_refused(site):
    site("fake-blind", "fake_blind", """
from alp_core import EmptyConfig, ObjectiveRecord, hookimpl
from alp_objectives import Objective

class Blind(Objective):
    inputs = {"audio_embeds": "audio_embeds"}

    def forward(self, audio_embeds):
        return audio_embeds.sum()

@hookimpl
def alp_objectives():
    return [ObjectiveRecord("blind", EmptyConfig, lambda config, **_: Blind())]
""")
    with pytest.raises(ConfigError, match="objective 'blind' reads .*it reads nothing the "
                                          "model trains"):
        check(config(objective={"name": "blind"}))
