"""Configs of the built-in objectives (pydantic only, so registering them never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

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
