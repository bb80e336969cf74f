"""``train.compile``: which blocks a regional compile picks, that it captures one graph per
kind of block with the weights' names kept and computes what eager does, and that the
engines compile what the config names."""

from __future__ import annotations

import copy
import types
from collections import Counter

import pytest
import torch
from torch import nn

from alp_models.audio.conformer import build_conformer_encoder
from alp_models.audio.transformer import TransformerAudioEncoder
from alp_models.audio.zipformer import build_zipformer_encoder
from alp_models.configs import (
    BertTextEncoderConfig,
    ConformerConfig,
    ProjectionConfig,
    TransformerAudioEncoderConfig,
    TransformerCaptionDecoderConfig,
    ZipformerConfig,
)
from alp_models.decoder.transformer import build_transformer_caption_decoder
from alp_models.text.bert import build_bert_text_encoder
from alp_models.text.tokenizer import minilm_model_dir
from alp_models.two_tower import AudioTextModel
from alp_objectives import InfoNCEConfig, InfoNCELoss
from alp_train.distributed import DistInfo
from alp_train.engines.torch_engines import SingleEngine, SingleEngineConfig
from alp_train.task import TrainTask, compile_regions

CAPTIONS = ["a dog barks in the rain", "slow female speech", "piano chords, fast", "a door"]


def tiny_task(dropout: float = 0.0) -> TrainTask:
    torch.manual_seed(0)
    audio = TransformerAudioEncoder(TransformerAudioEncoderConfig(
        d_model=16, num_layers=3, num_heads=2, ffn_dim=32, dropout=dropout))
    text = build_bert_text_encoder(BertTextEncoderConfig(
        hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, dropout=dropout,
        tokenizer=str(minilm_model_dir())))
    model = AudioTextModel(audio, text, ProjectionConfig(embed_dim=8))
    return TrainTask(model, InfoNCELoss(InfoNCEConfig()))


def a_batch(task: TrainTask, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([120, 97, 64, 120])
    return {"ids": [f"clip-{seed}-{i}" for i in range(4)],
            "features": torch.randn(4, 120, 80, generator=gen),
            "feature_lengths": lengths, **task.model.tokenizer(CAPTIONS)}


def kinds(regions: list[nn.Module]) -> Counter:
    return Counter(type(r).__name__ for r in regions)


def test_regions_are_each_models_repeated_layers():
    task = tiny_task()
    # the audio stem's two convolutions (a ModuleList of bare Conv2d) are not regions
    assert kinds(compile_regions(task.model.audio_encoder)) == {"PreNormLayer": 3}
    assert kinds(compile_regions(task.model.text_encoder)) == {"BertLayer": 2}
    zipformer = build_zipformer_encoder(ZipformerConfig(preset="base"))
    layers = [m for m in zipformer.modules() if type(m).__name__ == "ZipformerLayer"]
    regions = compile_regions(zipformer)  # stacks of mixed classes: searched inside
    assert kinds(regions) == {"ZipformerLayer": len(layers)} and len(layers) == 16
    assert kinds(compile_regions(build_conformer_encoder(ConformerConfig(num_layers=3)))) == {
        "ConformerLayer": 3}
    decoder = build_transformer_caption_decoder(
        TransformerCaptionDecoderConfig(num_layers=2), memory_dim=16)
    assert kinds(compile_regions(decoder)) == {"TransformerDecoderLayer": 2}


def test_a_part_may_declare_its_regions_and_one_without_layers_is_whole():
    class Declared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(2, 2)) for _ in range(3))

        def compile_regions(self):
            return [self.blocks[0]]

    declared = Declared()
    assert compile_regions(declared) == [declared.blocks[0]]
    flat = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
    assert compile_regions(flat) == [flat]


def test_regional_capture_is_one_graph_per_kind_of_layer_and_computes_the_same():
    from torch._dynamo.utils import counters

    eager = tiny_task().eval()
    compiled = copy.deepcopy(eager)
    names = list(compiled.state_dict())
    torch._dynamo.reset()
    counters.clear()
    # the "eager" backend: Dynamo's capture, checked quickly and without a C++ compiler
    assert compiled.compile_parts(regional=True, backend="eager", fullgraph=True) == {
        "audio_encoder": 3, "text_encoder": 2}
    assert list(compiled.state_dict()) == names  # checkpoints keep their keys
    cpu = torch.device("cpu")
    for task in (eager, compiled):
        out = task(task.prepare(a_batch(task, 0), cpu))
        out.loss.backward()
        task.loss = float(out.loss.detach())
    # three audio layers share one graph, two BERT layers another: weights are graph inputs
    assert counters["stats"]["unique_graphs"] == 2
    assert sum(counters["graph_break"].values()) == 0
    assert compiled.loss == pytest.approx(eager.loss, abs=1e-6)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, atol=1e-6, rtol=1e-5, msg=name)
    torch._dynamo.reset()


def make_engine(task: TrainTask, compile_mode) -> SingleEngine:
    train = types.SimpleNamespace(precision="fp32", grad_accum_steps=1, grad_clip=1.0,
                                  compile=compile_mode)
    engine = SingleEngine(SingleEngineConfig(), train, DistInfo())
    engine.setup(task, lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2),
                 lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0))
    return engine


@pytest.mark.parametrize("mode", [False, True, "whole", "regional"])
def test_the_engine_compiles_what_train_compile_names(mode):
    """Compiling is lazy (nothing is traced until a step), so this checks the wiring only;
    a regional and a whole compile run for real (Inductor) in
    tests/benchmarks/test_gpu_scripts.py::test_gpu_train_step_script_runs_on_the_cpu."""
    task = tiny_task()
    make_engine(task, mode)
    whole = mode in (True, "whole")
    for name in ("audio_encoder", "text_encoder"):
        part = getattr(task.model, name)
        regions = compile_regions(part)
        assert (part._compiled_call_impl is not None) == whole, name
        assert all((r._compiled_call_impl is not None) == (mode == "regional") for r in regions)
    assert task.objective._compiled_call_impl is None  # the objective stays eager
