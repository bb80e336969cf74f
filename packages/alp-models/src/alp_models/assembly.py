"""Model assembly: the parts an objective reads, each initialised from a seed of its own.

Each component draws its initial weights from a seed derived from the run seed and the
component's name, so adding, removing or reordering one part (a caption decoder built only to
read its tokenizer ids, say) never changes the initial weights of another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from alp_models.configs import PoolerConfig, ProjectionConfig

__all__ = ["build_audio_text_model", "component_seed", "seeded"]

T = TypeVar("T")


def component_seed(run_seed: int, name: str) -> int:
    """A 63-bit seed from ``(run_seed, name)``, stable across processes and platforms."""
    digest = hashlib.blake2b(f"{run_seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


def seeded(run_seed: int, name: str, build: Callable[[], T]) -> T:
    """``build()`` under the component's own seed; the caller's random stream is left as is."""
    # the CPU generator only: torch.manual_seed would also reseed every GPU, which
    # fork_rng(devices=[]) does not restore
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(component_seed(run_seed, name))
        return build()


def build_audio_text_model(
    *, seed: int, audio_encoder: Any, text_encoder: Any | None, caption_decoder: Any | None,
    projection: ProjectionConfig, needs: frozenset[str], pooler: PoolerConfig | None = None,
    input_dim: int | None = None,
) -> Any:
    """An :class:`~alp_models.two_tower.AudioTextModel` with the parts ``needs`` asks for.

    ``audio_encoder``/``text_encoder``/``caption_decoder`` are resolved components (with
    ``build(**context)``) or already built modules; ``needs`` are the model outputs the
    objective reads (``text_embeds`` → text tower, ``caption_logits`` → decoder); ``input_dim``
    (the filterbank bins) is passed to the encoder's factory as build context and checked
    against the encoder's own ``input_dim`` (:mod:`alp_models.audio.protocol`).
    """
    from alp_models.two_tower import AudioTextModel

    def build(part: Any, **context: Any) -> Any:
        return part.build(**context) if hasattr(part, "build") else part

    if not needs & {"text_embeds", "caption_logits"}:
        raise ValueError(f"the objective reads {sorted(needs)}; an audio-language model makes "
                         "text_embeds (text tower) and/or caption_logits (caption decoder)")
    from alp_models.audio.protocol import check_audio_encoder

    audio = seeded(seed, "audio_encoder", lambda: build(audio_encoder, input_dim=input_dim))
    check_audio_encoder(audio, getattr(getattr(audio_encoder, "record", None), "name", "?"),
                        input_dim)
    text = (seeded(seed, "text_encoder", lambda: build(text_encoder))
            if "text_embeds" in needs and text_encoder is not None else None)
    decoder = (seeded(seed, "caption_decoder",
                      lambda: build(caption_decoder, memory_dim=int(audio.output_dim)))
               if "caption_logits" in needs and caption_decoder is not None else None)
    return seeded(seed, "projection", lambda: AudioTextModel(
        audio, text, projection, caption_decoder=decoder, pooler=pooler))
