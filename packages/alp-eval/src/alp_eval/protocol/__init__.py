"""The benchmark protocol of ``alp eval``: a frozen encoder on the standard benchmarks.

For each benchmark (:mod:`alp_eval.datasets`) the clips are decoded, cut to ``max_seconds``
and embedded once (:mod:`.embeddings`, cached by :mod:`alp_eval.cache`); every protocol round
then fits probes on the frozen embeddings (:mod:`.rounds`, :mod:`.sed_probe`) and the rounds
are averaged (:mod:`.task`). The encoder needs only what :class:`FrameEncoder` names, which
``alp_eval.pretrained.PretrainedALP`` provides.

Nothing heavy is imported here (the protocols are typing only), so the plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from torch import Tensor

    from alp_eval.cache import EmbeddingCache
    from alp_eval.context import TaskResult

__all__ = ["BenchmarkTask", "FrameEncoder"]


@runtime_checkable
class FrameEncoder(Protocol):
    """A frozen audio encoder as the protocol sees it.

    ``frames(waves)`` takes mono float waves at ``sample_rate`` and returns the frame
    embeddings (B, T, D) (zero or anything past each length), their lengths (B,) and the
    seconds per frame; ``fingerprint`` is a stable hash of the weights and config (the cache
    key, with the clips and settings). An encoder may also have ``device``, where its
    features are computed: it joins the cache key, since a GPU's float32 FFT rounds otherwise
    than the CPU's (without it the CPU is assumed).
    """

    fingerprint: str
    sample_rate: int

    def frames(self, waves: list[Tensor]) -> tuple[Tensor, Tensor, float]: ...


@runtime_checkable
class BenchmarkTask(Protocol):
    """An eval task that brings its own data: ``run_benchmark`` embeds it with the encoder
    (through the cache, if one is given) and returns one result per probe kind."""

    name: str

    def run_benchmark(self, encoder: FrameEncoder, cache: EmbeddingCache | None = None
                      ) -> list[TaskResult]: ...
