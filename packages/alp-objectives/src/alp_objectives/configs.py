"""Configs of the built-in objectives (pydantic only, so registering them never imports torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alp_core import ComponentConfig


class InfoNCEConfig(ComponentConfig):
    """Symmetric audio-text InfoNCE, as in the paper: fixed temperature 0.07 by default."""

    temperature: float = Field(0.07, gt=0.0, description="initial (or fixed) softmax temperature")
    learnable_temperature: bool = Field(
        False, description="learn log(1/temperature) CLIP-style, clamped to max_logit_scale"
    )
    max_logit_scale: float = Field(100.0, gt=1.0, description="clamp of 1/temperature")
    embedding_regularizer: float = Field(
        0.0, ge=0.0, description="weight of mean(|e|)/||e|| per modality (the paper's regulariser)"
    )
    gather: bool = Field(
        True, description="gather embeddings from all ranks (with gradient) when distributed"
    )


class CaptioningConfig(ComponentConfig):
    """Teacher-forced captioning cross-entropy with an optional CapPa parallel share.

    Token ids (pad, EOS, mask) are not options here: they belong to the tokenizer and are
    passed to :class:`~alp_objectives.captioning.CaptioningLoss` when it is built.
    """

    label_smoothing: float = Field(
        0.1, ge=0.0, lt=1.0, description="label smoothing of the cross-entropy (paper: 0.1)"
    )
    parallel_probability: float = Field(
        0.0, ge=0.0, le=1.0,
        description="per-sample probability of the CapPa parallel mode (all-mask inputs)",
    )
    sync_tokens: bool = Field(
        True, description="with torch.distributed running, weight each rank's token mean by "
        "its share of all ranks' tokens (one all-reduce of the counts), so the mean over ranks "
        "that DDP takes is the mean over every token of the global batch; the token "
        "accuracies and n_tokens are then the global batch's too (false: each rank's own)",
    )


class SigLIPConfig(ComponentConfig):
    """Pairwise sigmoid loss (SigLIP) with the published initialisation: scale 10, bias -10."""

    init_logit_scale: float = Field(
        10.0, gt=0.0, description="initial (or fixed) logit scale exp(t'); SigLIP: t' = log 10"
    )
    init_logit_bias: float = Field(
        -10.0, description="initial (or fixed) logit bias b; SigLIP: -10"
    )
    learnable: bool = Field(True, description="learn t' and b; False keeps both fixed")
    max_logit_scale: float = Field(100.0, gt=0.0, description="clamp of the logit scale exp(t')")
    distributed: Literal["chunked", "gather", "local"] = Field(
        "chunked",
        description="across ranks: 'chunked' passes text chunks around the ring (local x chunk "
        "blocks), 'gather' all-gathers the texts (local x global), 'local' scores only the "
        "rank's own batch",
    )


class ObjectiveTerm(BaseModel):
    """One term of a weighted sum: a registered objective by ``name``, its ``weight``, and
    that objective's own options as the other keys (``{name: infonce, weight: 1, temperature:
    0.05}``). ``label`` prefixes its metrics (default: the name)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    weight: float = Field(1.0, ge=0.0, description="factor of this term's loss in the sum")
    label: str | None = Field(None, description="metric prefix; default the objective's name")

    @property
    def key(self) -> str:
        return self.label or self.name

    def spec(self) -> dict[str, Any]:
        """``{name, **options}``: the term as a component spec, without weight and label."""
        return {"name": self.name, **(self.model_extra or {})}


class WeightedSumConfig(ComponentConfig):
    """A weighted sum of registered objectives, each chosen by name with its own options."""

    terms: list[ObjectiveTerm] = Field(
        min_length=1, description="[{name, weight, label?, ...options}, ...]"
    )

    @field_validator("terms")
    @classmethod
    def _unique_labels(cls, terms: list[ObjectiveTerm]) -> list[ObjectiveTerm]:
        keys = [t.key for t in terms]
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"two terms are labelled {key!r}; give each a distinct 'label'")
            if "." in key or "/" in key:
                raise ValueError(f"term label {key!r} may not contain '.' or '/'")
        return terms

    def nested_components(self) -> list[tuple[str, dict[str, Any], str]]:
        """The term objectives, resolved (and so validated) with the run config."""
        return [("objective", t.spec(), f"terms.{i}") for i, t in enumerate(self.terms)]


class CoCaConfig(ComponentConfig):
    """CoCa-style hybrid: a contrastive loss on the pooled embeddings plus captioning on the
    encoder frames, weighted (CoCa's published weights: contrastive 1, captioning 2)."""

    contrastive: dict[str, Any] = Field(
        default_factory=lambda: {"name": "infonce"},
        description="the contrastive objective by name with its options, e.g. {name: siglip}",
    )
    contrastive_weight: float = Field(1.0, ge=0.0)
    captioning: CaptioningConfig = Field(default_factory=CaptioningConfig)
    captioning_weight: float = Field(2.0, ge=0.0)

    def nested_components(self) -> list[tuple[str, dict[str, Any], str]]:
        return [("objective", self.contrastive, "contrastive")]
