"""Hybrid objectives: the weighted sum and CoCa against their terms, the step protocol, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alp_core import ConfigError, UnknownComponentError, new_plugin_manager, resolve_component
from alp_objectives import (
    CaptioningConfig,
    CaptioningLoss,
    InfoNCEConfig,
    InfoNCELoss,
    SigLIPConfig,
    SigLIPLoss,
    WeightedSumLoss,
    as_objective,
    to_loss_output,
)

BOS, PAD, EOS, MASK, VOCAB = 0, 1, 2, 9, 10
IDS = {"bos_id": BOS, "pad_id": PAD, "eos_id": EOS, "mask_id": MASK, "vocab_size": VOCAB}
TOKENS = torch.tensor([
    [BOS, 5, 6, 7, EOS, PAD],
    [BOS, 4, EOS, PAD, PAD, PAD],
    [BOS, 3, 3, 8, 4, EOS],
    [BOS, 6, EOS, PAD, PAD, PAD],
])


def embeddings(batch=4, dim=6, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, generator=g, dtype=dtype).requires_grad_()
    t = torch.randn(batch, dim, generator=g, dtype=dtype).requires_grad_()
    return a, t


def build(spec, **context):
    pm = new_plugin_manager()
    return resolve_component(pm, "objective", spec, "objective").build(plugin_manager=pm,
                                                                        **context)


def test_weighted_sum_equals_the_weighted_terms_in_value_and_gradient():
    a, t = embeddings()
    ids = torch.tensor([7, 7, 8, 9])
    step = {"audio_embeds": F.normalize(a, dim=-1), "text_embeds": F.normalize(t, dim=-1),
            "clip_ids": ids}
    loss = WeightedSumLoss({"infonce": (InfoNCELoss(), 0.3),
                            "siglip": (SigLIPLoss(SigLIPConfig(learnable=False)), 1.7)})
    out = loss(step)
    ga, gt = torch.autograd.grad(out.loss, (a, t))

    an, tn = F.normalize(a, dim=-1), F.normalize(t, dim=-1)
    ref = (0.3 * InfoNCELoss()(an, tn, ids).loss
           + 1.7 * SigLIPLoss(SigLIPConfig(learnable=False))(an, tn, ids).loss)
    ra, rt = torch.autograd.grad(ref, (a, t))
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(ga, ra)
    torch.testing.assert_close(gt, rt)
    assert out.metrics["loss"] == pytest.approx(ref.item())
    assert {"infonce/loss", "infonce/a2t_top1", "siglip/loss", "siglip/pair_acc"} <= set(
        out.metrics)
    assert loss.requires == {"audio_embeds", "text_embeds"}


def test_weighted_sum_passes_gradcheck():
    a, t = embeddings(batch=3, dim=4, seed=3)
    loss = WeightedSumLoss({"infonce": (InfoNCELoss(InfoNCEConfig(embedding_regularizer=0.5)),
                                        0.5),
                            "siglip": (SigLIPLoss(SigLIPConfig(learnable=False)), 2.0)})
    assert torch.autograd.gradcheck(
        lambda x, y: loss({"audio_embeds": F.normalize(x, dim=-1),
                           "text_embeds": F.normalize(y, dim=-1)}).loss, (a, t))


def test_coca_is_contrastive_plus_weighted_captioning():
    torch.manual_seed(0)
    coca = build({"name": "coca", "captioning_weight": 2.0,
                  "captioning": {"parallel_probability": 0.5}}, special_ids=IDS)
    assert coca.requires == {"audio_embeds", "text_embeds", "caption_logits"}
    assert set(coca.terms) == {"infonce", "captioning"}
    prepared = coca.prepare({"caption_ids": TOKENS})
    assert set(prepared) == {"decoder_input_ids", "decoder_attention_mask", "decoder_causal",
                             "caption_targets", "caption_parallel"}
    assert prepared["decoder_input_ids"].shape == (4, 5)

    a, t = embeddings()
    logits = torch.randn(4, 5, VOCAB, dtype=torch.float64, requires_grad=True)
    step = {"audio_embeds": F.normalize(a, dim=-1), "text_embeds": F.normalize(t, dim=-1),
            "caption_logits": logits, **prepared}
    out = coca.compute(step)

    infonce = InfoNCELoss()(F.normalize(a, dim=-1), F.normalize(t, dim=-1)).loss
    caption = CaptioningLoss(CaptioningConfig(parallel_probability=0.5), **IDS)(
        logits, prepared["caption_targets"], prepared["caption_parallel"]).loss
    ref = infonce + 2.0 * caption
    assert out.loss.item() == pytest.approx(ref.item(), rel=1e-12)
    g_out = torch.autograd.grad(out.loss, (a, t, logits))
    g_ref = torch.autograd.grad(ref, (a, t, logits))
    for x, y in zip(g_out, g_ref):
        torch.testing.assert_close(x, y)
    assert {"captioning/token_acc", "captioning/parallel_fraction", "infonce/loss"} <= set(
        out.metrics)


def test_coca_with_siglip_and_its_options():
    coca = build({"name": "coca", "contrastive": {"name": "siglip", "init_logit_bias": -5.0},
                  "contrastive_weight": 0.5}, special_ids=IDS)
    assert isinstance(coca.terms["siglip"], SigLIPLoss)
    assert coca.terms["siglip"].bias().item() == -5.0
    assert coca.weights == {"siglip": 0.5, "captioning": 2.0}


def test_coca_gradcheck_on_small_inputs():
    coca = build({"name": "coca", "captioning": {"parallel_probability": 0.0}}, special_ids=IDS)
    prepared = coca.prepare({"caption_ids": TOKENS[:2, :4]
                             .masked_fill(TOKENS[:2, :4] == 7, EOS)})
    a, t = embeddings(batch=2, dim=3, seed=5)
    logits = torch.randn(2, 3, VOCAB, dtype=torch.float64, requires_grad=True)

    def f(x, y, z):
        return coca.compute({"audio_embeds": F.normalize(x, dim=-1),
                             "text_embeds": F.normalize(y, dim=-1), "caption_logits": z,
                             **prepared}).loss

    assert torch.autograd.gradcheck(f, (a, t, logits))


def test_each_registered_objective_declares_what_it_reads():
    assert build({"name": "infonce"}).requires == {"audio_embeds", "text_embeds"}
    assert build({"name": "siglip"}).requires == {"audio_embeds", "text_embeds"}
    assert build({"name": "captioning"}, special_ids=IDS).requires == {"caption_logits"}
    weighted = build({"name": "weighted-sum", "terms": [
        {"name": "captioning", "weight": 1.0, "label_smoothing": 0.0},
        {"name": "infonce", "weight": 0.1, "label": "clip", "temperature": 0.05}]},
        special_ids=IDS)
    assert weighted.requires == {"audio_embeds", "text_embeds", "caption_logits"}
    assert weighted.weights == {"captioning": 1.0, "clip": 0.1}
    assert weighted.terms["captioning"].config.label_smoothing == 0.0
    assert weighted.terms["clip"].config.temperature == 0.05


def test_nested_terms_are_validated_with_the_config():
    pm = new_plugin_manager()
    with pytest.raises(UnknownComponentError, match=r"objective\.terms\.1\.name.*infonc.*"
                       r"valid choices: captioning, coca, infonce"):
        resolve_component(pm, "objective", {"name": "weighted-sum", "terms": [
            {"name": "siglip"}, {"name": "infonc"}]}, "objective")
    with pytest.raises(ConfigError, match=r"objective\.terms\.0\.temprature: unknown key"):
        resolve_component(pm, "objective", {"name": "weighted-sum", "terms": [
            {"name": "infonce", "temprature": 0.1}]}, "objective")
    with pytest.raises(ConfigError, match="labelled 'infonce'"):
        resolve_component(pm, "objective", {"name": "weighted-sum", "terms": [
            {"name": "infonce"}, {"name": "infonce", "weight": 2}]}, "objective")
    with pytest.raises(ConfigError, match=r"objective\.terms\.0\.weight"):
        resolve_component(pm, "objective", {"name": "weighted-sum", "terms": [
            {"name": "infonce", "weight": -1}]}, "objective")
    with pytest.raises(ConfigError, match=r"objective\.terms.*at least 1"):
        resolve_component(pm, "objective", {"name": "weighted-sum", "terms": []}, "objective")
    with pytest.raises(ConfigError, match=r"objective\.contrastive: expected a mapping"):
        resolve_component(pm, "objective", {"name": "coca", "contrastive": {"nam": "x"}},
                          "objective")


def test_captioning_needs_the_tokenizer_ids():
    with pytest.raises(ConfigError, match="special_ids"):
        build({"name": "captioning"})
    with pytest.raises(ConfigError, match="not a contrastive objective"):
        build({"name": "coca", "contrastive": {"name": "captioning"}}, special_ids=IDS)


def test_two_terms_preparing_the_same_inputs_are_refused():
    weighted = build({"name": "weighted-sum", "terms": [
        {"name": "captioning"}, {"name": "captioning", "label": "again"}]}, special_ids=IDS)
    with pytest.raises(ValueError, match="'captioning' and 'again' both prepare"):
        weighted.prepare({"caption_ids": TOKENS})


def test_a_missing_step_value_is_named():
    with pytest.raises(KeyError, match="needs 'text_embeds'.*holds only \\['audio_embeds'\\]"):
        InfoNCELoss().compute({"audio_embeds": torch.randn(2, 4)})
    with pytest.raises(KeyError, match="caption_ids"):
        CaptioningLoss(**IDS).prepare({"input_ids": TOKENS})


class MarginLoss(nn.Module):
    """A plain third-party module: forward(audio, text, clip_ids) -> {"loss": ...}."""

    def __init__(self) -> None:
        super().__init__()
        self.margin = nn.Parameter(torch.tensor(0.2, dtype=torch.float64))

    def forward(self, audio_embeds, text_embeds, clip_ids=None):
        sim = audio_embeds @ text_embeds.t()
        return {"loss": (self.margin - sim.diagonal() + sim.max(dim=1).values).clamp_min(0).mean(),
                "hardest": sim.max().item()}


def test_plain_modules_join_a_weighted_sum_and_keep_their_parameters():
    plain = MarginLoss()
    loss = WeightedSumLoss({"margin": (plain, 1.0), "infonce": (InfoNCELoss(), 1.0)})
    assert as_objective(plain).requires == {"audio_embeds", "text_embeds"}
    assert any(p is plain.margin for p in loss.parameters())
    a, t = embeddings()
    out = loss({"audio_embeds": F.normalize(a, dim=-1), "text_embeds": F.normalize(t, dim=-1)})
    out.loss.backward()
    assert plain.margin.grad is not None
    assert "margin/hardest" in out.metrics and "margin/loss" in out.metrics


def test_a_registered_third_party_objective_is_a_term_by_name(site):
    site("fake-margin", "fake_margin", """
        import torch
        from alp_core import EmptyConfig, ObjectiveRecord, hookimpl

        class Margin(torch.nn.Module):
            def __init__(self, config):
                super().__init__()
            def forward(self, audio_embeds, text_embeds, clip_ids=None):
                return (1 - (audio_embeds * text_embeds).sum(-1)).mean()

        @hookimpl
        def alp_objectives():
            return [ObjectiveRecord("margin", EmptyConfig, lambda config: Margin(config))]
    """)
    loss = build({"name": "weighted-sum", "terms": [{"name": "margin", "weight": 2.0},
                                                    {"name": "infonce"}]})
    a, t = embeddings()
    step = {"audio_embeds": F.normalize(a, dim=-1), "text_embeds": F.normalize(t, dim=-1)}
    out = loss(step)
    expected = (2 * (1 - (step["audio_embeds"] * step["text_embeds"]).sum(-1)).mean()
                + InfoNCELoss()(step["audio_embeds"], step["text_embeds"]).loss)
    assert out.loss.item() == pytest.approx(expected.item())


def test_loss_outputs_are_checked():
    with pytest.raises(ValueError, match="scalar tensor, got \\(3,\\)"):
        to_loss_output(torch.ones(3), "mine")
    with pytest.raises(TypeError, match="mine returned float"):
        to_loss_output(1.0, "mine")
    with pytest.raises(ValueError, match="weight must be >= 0"):
        WeightedSumLoss({"infonce": (InfoNCELoss(), -1.0)})


def test_a_coca_step_reads_the_device_a_few_times_not_once_per_value(monkeypatch):
    # each .item()/int()/bool() of a GPU tensor waits for the device; the CoCa step made 22
    # such reads (validation flags and metrics one by one), now one per group of values
    from torch.utils._python_dispatch import TorchDispatchMode

    class Reads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                Reads.count += 1
            return func(*args, **(kwargs or {}))

    lists = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: lists.append(1) or original(t))
    coca = build({"name": "coca", "captioning": {"parallel_probability": 0.5}},
                 special_ids=IDS)
    a, t = embeddings()
    logits = torch.randn(4, 5, VOCAB, dtype=torch.float64, requires_grad=True)
    with Reads():
        step = coca.prepare({"caption_ids": TOKENS})
        out = coca.compute({**step, "audio_embeds": a, "text_embeds": t,
                            "caption_logits": logits})
    assert Reads.count + len(lists) <= 5
    terms = sum(w * out.metrics[f"{label}/loss"] for label, w in coca.weights.items())
    assert out.metrics["loss"] == pytest.approx(float(out.loss.detach())) == pytest.approx(terms)
