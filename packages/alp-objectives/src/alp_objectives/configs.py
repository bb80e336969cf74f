"""Configs of the built-in objectives (pydantic only, so registering them never imports torch)."""

from __future__ import annotations

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
