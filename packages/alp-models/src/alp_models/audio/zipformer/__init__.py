"""Zipformer (Yao et al., ICLR 2024) as an ALP audio encoder, written after icefall's design.

Modules: ``scaling`` (SwooshR/L, BiasNorm, bypass), ``subsampling`` (conv2d front end),
``attention`` (relative-position attention weights and their users), ``layers`` (the
Zipformer layer), ``encoder`` (multi-rate stacks), ``model`` (the ALP encoder + factory).
"""

from __future__ import annotations

from alp_models.audio.zipformer.model import ZipformerAudioEncoder, build_zipformer_encoder

__all__ = ["ZipformerAudioEncoder", "build_zipformer_encoder"]
