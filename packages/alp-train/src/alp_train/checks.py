"""Checks made before any process starts or any folder is written (``alp run`` and ``--check``).

Beyond each component's own config: every factory is imported (a misspelled lazy path of a
plugin fails here, naming the plugin), and facts that span components are compared.
"""

from __future__ import annotations

from alp_core import ConfigError, Resolved
from alp_core.records import resolve_factory
from alp_train.config import ResolvedRun

__all__ = ["check_run"]

def _components(resolved: ResolvedRun) -> list[tuple[str, Resolved]]:
    out = [("data.source", resolved.source), ("model.audio_encoder", resolved.audio_encoder),
           ("model.text_encoder", resolved.text_encoder),
           ("model.caption_decoder", resolved.caption_decoder), ("objective", resolved.objective),
           ("train.engine", resolved.engine), ("train.optimizer", resolved.optimizer),
           ("train.schedule", resolved.schedule)]
    out += [(f"eval.tasks.{i}", t) for i, t in enumerate(resolved.eval_tasks)]
    stack = list(out)
    while stack:  # components nested in others (hybrid objectives' terms)
        key, item = stack.pop()
        for inner_key, inner in item.nested:
            stack.append((f"{key}.{inner_key}", inner))
            out.append((f"{key}.{inner_key}", inner))
    return out

def import_factories(resolved: ResolvedRun) -> None:
    """Import every component's factory; a broken lazy path is an error naming its plugin."""
    for key, item in _components(resolved):
        rec = item.record
        try:
            resolve_factory(rec.factory)
        except Exception as err:  # ImportError, AttributeError, a bad path
            who = f"plugin {rec.plugin!r} ({rec.distribution or 'no distribution'})"
            raise ConfigError(f"{key}: {rec.kind} {rec.name!r} of {who} has factory "
                              f"{rec.factory!r}, which cannot be imported: {err}") from None

def check_run(resolved: ResolvedRun, world_size: int | None = None) -> None:
    """Every check that needs no data and no model weights; raises :class:`ConfigError`."""
    import_factories(resolved)
    cfg = resolved.config
    fbank = cfg.data.fbank
    encoder_cfg = resolved.audio_encoder.config
    expected = getattr(encoder_cfg, "expected_input_dim", None)  # configs that must look it up
    input_dim = expected() if callable(expected) else getattr(encoder_cfg, "input_dim", None)
    if input_dim is not None and input_dim != fbank.num_mel_bins:
        raise ConfigError(f"model.audio_encoder.input_dim is {input_dim} but data.fbank."
                          f"num_mel_bins is {fbank.num_mel_bins}; set them equal")
    if cfg.data.audio.sample_rate != fbank.sample_rate:
        raise ConfigError(f"data.audio.sample_rate is {cfg.data.audio.sample_rate} but "
                          f"data.fbank.sample_rate is {fbank.sample_rate}; set them equal")
    if cfg.data.features_on == "device" and fbank.dither != 0.0:
        raise ConfigError("data.fbank.dither is not supported with data.features_on=device: "
                          "the batch's dither noise would come from the training's random "
                          "stream, not each clip's; set data.features_on=worker or dither 0")
    pooler = cfg.model.pooler
    if pooler.name == "attention" and cfg.model.embed_dim % pooler.num_heads:
        raise ConfigError(f"model.pooler.num_heads is {pooler.num_heads} but model.embed_dim "
                          f"is {cfg.model.embed_dim}: attention pooling needs heads that "
                          "divide the embedding size")
    if cfg.model.init_from is not None:
        from alp_models.weights import weights_file

        weights_file(cfg.model.init_from.path)  # before a run folder is made
    from alp_train.recipe import objective_needs

    needs = objective_needs(resolved)  # builds the objective: CoCa checks its terms here
    if not needs & {"text_embeds", "caption_logits"}:
        raise ConfigError(f"objective {resolved.objective.record.name!r} reads {sorted(needs)}; "
                          "the model makes text_embeds (text tower) and caption_logits "
                          "(caption decoder): it reads nothing the model trains")
    if cfg.train.text_lr is not None and "text_embeds" not in needs:
        raise ConfigError(f"train.text_lr: objective {resolved.objective.record.name!r} "
                          "builds no text tower, so there is no text group to give a rate; "
                          "remove train.text_lr")
    from alp_eval.configs import BenchmarkTaskConfig

    for i, task in enumerate(resolved.eval_tasks):
        if isinstance(task.config, BenchmarkTaskConfig):
            raise ConfigError(f"eval.tasks.{i}: {task.record.name!r} is a benchmark task (its "
                              "own dataset, evaluated with `alp eval RUN --tasks "
                              f"{task.record.name}:root=DIR` after training); eval.tasks of "
                              "alp run take tasks on the run's held-out split")
    nproc = world_size or cfg.train.nproc
    engine_cls = resolve_factory(resolved.engine.record.factory)
    check = getattr(engine_cls, "check_config", None)
    if callable(check):  # the engine's own refusals (built-in and plugin engines alike)
        check(resolved.engine.config, cfg, nproc)
    if cfg.train.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' was asked for but no GPU is visible; "
                              "accepted: auto, cpu, cuda")
    if nproc > 1 and world_size is None and cfg.train.device in ("auto", "cuda"):
        _check_gpus_for_local_ranks(nproc)
    if cfg.train.precision == "fp16" and cfg.train.device in ("cpu", "auto"):
        import torch

        if cfg.train.device == "cpu" or not torch.cuda.is_available():
            raise ConfigError("train.precision: fp16 needs a GPU (loss scaling), and "
                              f"train.device={cfg.train.device} runs on the CPU here; use "
                              "bf16 or fp32")
    if cfg.train.grad_cache.chunk_size and "caption_logits" in needs:
        raise ConfigError("train.grad_cache: gradient caching is for contrastive objectives "
                          f"(text_embeds only); {resolved.objective.record.name!r} also "
                          "reads caption_logits")


def _check_gpus_for_local_ranks(nproc: int) -> None:
    """``train.nproc`` processes started here on GPUs need one GPU each: ranks sharing one
    fail in NCCL ("Duplicate GPU detected") after the start-up."""
    from alp_train.distributed import launched_by_torchrun

    if launched_by_torchrun():  # an outside launcher placed the ranks (e.g. one GPU each)
        return
    import torch

    if not torch.cuda.is_available():
        return  # auto: the CPU and gloo
    gpus = torch.cuda.device_count()
    if nproc > gpus:
        raise ConfigError(
            f"train.nproc: {nproc} processes on this machine but {gpus} GPU(s) are visible; "
            f"two ranks would share a GPU, which NCCL refuses. Use train.nproc <= {gpus}, or "
            "train.device=cpu for gloo processes")
