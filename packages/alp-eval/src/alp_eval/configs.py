"""Configs of the alp-eval tasks (pydantic only, no torch import, so registration stays cheap)."""

from __future__ import annotations

from pydantic import Field, field_validator

from alp_core import ComponentConfig


class LinearProbeConfig(ComponentConfig):
    """A linear probe (multinomial logistic regression) on the mean-pooled frozen encoder output.

    The weight decay is chosen from ``weight_decays`` on a held-out ``val_fraction`` of the
    train embeddings, then the probe is refit on all of them.
    """

    tasks: list[str] | None = Field(
        default=None, description="label keys to probe; None = every key found in the train split"
    )
    max_train: int | None = Field(
        default=None, ge=2, description="cap on train clips per task (seeded random subset)"
    )
    steps: int = Field(default=200, ge=1, description="L-BFGS iterations per fit")
    lr: float = Field(default=1.0, gt=0, description="L-BFGS step size (a line search is used)")
    weight_decays: tuple[float, ...] = Field(
        default=(1e-4, 1e-3, 1e-2, 1e-1), min_length=1, description="L2 penalties to choose from"
    )
    val_fraction: float = Field(default=0.2, gt=0, lt=1)
    min_train: int = Field(default=4, ge=2, description="tasks with fewer train clips are skipped")
    seed: int | None = Field(default=None, description="None = the EvalContext seed")

    @field_validator("weight_decays")
    @classmethod
    def _non_negative(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(wd < 0 for wd in value):
            raise ValueError(f"weight_decays must be >= 0, got {value}")
        return value


class RetrievalConfig(ComponentConfig):
    """Audio-text retrieval in the joint embedding space, both directions, on the test split."""

    ks: tuple[int, ...] = Field(default=(1, 5, 10), min_length=1)
    map_k: int = Field(default=10, ge=1)
    dedupe_captions: bool = Field(
        default=True,
        description="identical caption strings form one gallery item, relevant to every clip "
        "that has it (avoids ties between identical texts deciding the ranking)",
    )
    text_batch_size: int = Field(default=256, ge=1, description="captions per embed_text call")

    @field_validator("ks")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in value):
            raise ValueError(f"ks must be >= 1, got {value}")
        return value
