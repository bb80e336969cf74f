"""Hook specifications of the ``alp`` pluggy project.

A plugin is a module (or object) with functions named like these hooks, decorated with
:data:`alp_core.hookimpl`, and listed under the ``alp`` entry-point group of its
distribution. Each hook returns a list of records; nothing is mutated globally. The built-in
components of ALP register through exactly these hooks.
"""

from __future__ import annotations

import pluggy

from alp_core.records import (
    AudioEncoderRecord,
    CaptionDecoderRecord,
    CommandRecord,
    DataSourceRecord,
    EngineRecord,
    EvalTaskRecord,
    LRScheduleRecord,
    ObjectiveRecord,
    OptimizerRecord,
    TextEncoderRecord,
)

PROJECT = "alp"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def alp_audio_encoders() -> list[AudioEncoderRecord]:
    """Audio encoders this plugin provides.

    Example::

        @hookimpl
        def alp_audio_encoders():
            return [AudioEncoderRecord("tiny-cnn", TinyCNNConfig, "my_pkg.encoder:TinyCNN")]
    """


@hookspec
def alp_text_encoders() -> list[TextEncoderRecord]:
    """Text encoders (with their tokenizers) this plugin provides.

    Example::

        @hookimpl
        def alp_text_encoders():
            return [TextEncoderRecord("my-bert", MyBertConfig, "my_pkg.text:build")]
    """


@hookspec
def alp_caption_decoders() -> list[CaptionDecoderRecord]:
    """Caption decoders this plugin provides.

    The factory is called as ``factory(config, memory_dim=<audio encoder output_dim>)``; the
    decoder has a picklable ``tokenizer``, ``special_ids`` (``bos_id``, ``eos_id``, ``pad_id``,
    ``mask_id``, ``vocab_size``), ``forward(input_ids, attention_mask, causal, memory,
    memory_lengths) -> logits``, ``generate(memory, memory_lengths)`` and ``decode(ids)``.

    Example::

        @hookimpl
        def alp_caption_decoders():
            return [CaptionDecoderRecord("gru", GRUDecoderConfig, "my_pkg.dec:GRUDecoder")]
    """


@hookspec
def alp_objectives() -> list[ObjectiveRecord]:
    """Training objectives this plugin provides.

    The factory may take ``special_ids`` (the caption decoder's token ids) and
    ``plugin_manager`` as keyword arguments; it gets only those it names. The objective is a
    module with ``forward(audio_embeds, text_embeds, clip_ids)`` or an
    ``alp_objectives.Objective`` declaring what it reads (see ``alp_objectives.base``).

    Example::

        @hookimpl
        def alp_objectives():
            return [ObjectiveRecord("triplet", TripletConfig, "my_pkg.loss:TripletLoss")]
    """


@hookspec
def alp_eval_tasks() -> list[EvalTaskRecord]:
    """Evaluation tasks run on the frozen encoder.

    Example::

        @hookimpl
        def alp_eval_tasks():
            return [EvalTaskRecord("knn-probe", KNNConfig, "my_pkg.eval:KNNProbe")]
    """


@hookspec
def alp_data_sources() -> list[DataSourceRecord]:
    """Corpus recipes that turn a source corpus into ALP manifests.

    Example::

        @hookimpl
        def alp_data_sources():
            return [DataSourceRecord("clotho", ClothoConfig, "my_pkg.clotho:ClothoSource")]
    """


@hookspec
def alp_engines() -> list[EngineRecord]:
    """Training engines (how steps run on one or many processes) this plugin provides.

    The factory is called as ``factory(config, train=<TrainConfig>, dist=<DistInfo>)`` and
    returns an ``alp_train.engines.base.Engine``; ``train.engine: {name: ..., ...}`` selects it.

    Example::

        @hookimpl
        def alp_engines():
            return [EngineRecord("fsdp2", FSDP2Config, "my_pkg.fsdp:FSDP2Engine")]
    """


@hookspec
def alp_optimizers() -> list[OptimizerRecord]:
    """Optimizers this plugin provides (``train.optimizer: {name: ..., ...}``).

    The factory is called as ``factory(config, param_groups=..., lr=...)``; each group is a
    dict with ``params``, ``name``, ``lr_scale`` and ``no_decay`` (see ``alp_train.optim``).

    Example::

        @hookimpl
        def alp_optimizers():
            return [OptimizerRecord("lion", LionConfig, "my_pkg.lion:build_lion")]
    """


@hookspec
def alp_lr_schedules() -> list[LRScheduleRecord]:
    """Learning-rate schedules this plugin provides (``train.schedule: {name: ..., ...}``).

    The factory is called as ``factory(config, optimizer=..., total_steps=...,
    steps_per_epoch=...)`` and returns a ``torch.optim.lr_scheduler.LRScheduler`` stepped once
    per optimizer step.

    Example::

        @hookimpl
        def alp_lr_schedules():
            return [LRScheduleRecord("linear", LinearConfig, "my_pkg.sched:build_linear")]
    """


@hookspec
def alp_cli_commands() -> list[CommandRecord]:
    """Sub-commands added to the ``alp`` command line.

    Example::

        @hookimpl
        def alp_cli_commands():
            return [CommandRecord("hello", "say hello", "my_pkg.cli:add_args", "my_pkg.cli:run")]
    """


#: hook name -> record kind, in the order ``alp plugins`` lists them.
HOOK_KINDS: dict[str, str] = {
    "alp_audio_encoders": "audio_encoder",
    "alp_text_encoders": "text_encoder",
    "alp_caption_decoders": "caption_decoder",
    "alp_objectives": "objective",
    "alp_eval_tasks": "eval_task",
    "alp_data_sources": "data_source",
    "alp_engines": "engine",
    "alp_optimizers": "optimizer",
    "alp_lr_schedules": "lr_schedule",
    "alp_cli_commands": "command",
}
