"""The whole registration of the example plugin: four hooks returning records."""

from __future__ import annotations

from alp_core import (
    AudioEncoderRecord,
    EngineRecord,
    EvalTaskRecord,
    ObjectiveRecord,
    hookimpl,
)
from alp_plugin_example.configs import (
    Conv1dEncoderConfig,
    FSDP2EngineConfig,
    KNNProbeConfig,
    MarginRankingConfig,
)


@hookimpl
def alp_audio_encoders() -> list[AudioEncoderRecord]:
    return [AudioEncoderRecord("conv1d", Conv1dEncoderConfig,
                               "alp_plugin_example.encoder:Conv1dEncoder",
                               "1-D convolutions over fbank frames")]


@hookimpl
def alp_objectives() -> list[ObjectiveRecord]:
    return [ObjectiveRecord("margin-ranking", MarginRankingConfig,
                            "alp_plugin_example.objective:MarginRankingLoss",
                            "hinge loss with hardest in-batch negatives (VSE++)")]


@hookimpl
def alp_eval_tasks() -> list[EvalTaskRecord]:
    return [EvalTaskRecord("knn-probe", KNNProbeConfig, "alp_plugin_example.knn:KNNProbe",
                           "k-nearest-neighbour accuracy on pooled embeddings")]


@hookimpl
def alp_engines() -> list[EngineRecord]:
    return [EngineRecord("fsdp2", FSDP2EngineConfig, "alp_plugin_example.engine:FSDP2Engine",
                         "torch FSDP2 (fully_shard): parameters, gradients and optimizer "
                         "state sharded over train.nproc processes")]
