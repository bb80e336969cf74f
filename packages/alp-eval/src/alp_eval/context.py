"""What an evaluation task sees (frozen embeddings of a train and a test split) and returns.

No torch import at runtime: the dataclasses only hold tensors, so this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from torch import Tensor


@dataclass
class SplitEmbeddings:
    """Frozen-encoder outputs of one split, one row per clip, with its captions and labels."""

    ids: list[str]
    pooled: Tensor
    audio_embeds: Tensor | None
    captions: list[tuple[str, ...]]
    labels: list[dict[str, str]]

    def __post_init__(self) -> None:
        n = len(self.ids)
        sizes = {
            "pooled": int(self.pooled.shape[0]),
            "captions": len(self.captions),
            "labels": len(self.labels),
        }
        if self.audio_embeds is not None:
            sizes["audio_embeds"] = int(self.audio_embeds.shape[0])
        wrong = {k: v for k, v in sizes.items() if v != n}
        if wrong:
            raise ValueError(f"SplitEmbeddings: {len(self.ids)} ids but sizes {wrong}")

    def __len__(self) -> int:
        return len(self.ids)

    def sorted_by_id(self) -> SplitEmbeddings:
        """The rows in clip-id order, so that what the tasks draw from a split (validation
        rows, capped subsets) depends on which clips it holds, not on the order a loader gave
        them in (a manifest and a stream of shuffled shards give the same clips in another
        order)."""
        order = sorted(range(len(self.ids)), key=self.ids.__getitem__)
        return SplitEmbeddings(
            [self.ids[i] for i in order], self.pooled[order],
            None if self.audio_embeds is None else self.audio_embeds[order],
            [self.captions[i] for i in order], [self.labels[i] for i in order])


class CaptionGenerator(Protocol):
    """Captions of the test split by the model's caption decoder.

    ``generate(max_clips, **options)`` -> ``{clip id: caption}`` for the first ``max_clips``
    readable test clips in loader order (every one when None), ids as in
    ``EvalContext.test.ids``; ``options`` (e.g. ``max_tokens``, ``num_beams``) go to the
    model's ``generate_captions``.
    """

    def __call__(self, max_clips: int | None = None, **options: Any) -> dict[str, str]: ...


@dataclass
class EvalContext:
    """Train split (probes fit on it), test split (everything is measured on it), text tower.

    ``generate_captions`` is None when the model has no caption decoder. A task that measures
    nothing says why in ``notes`` (task name -> reason), which the caller may put in its report.
    """

    train: SplitEmbeddings
    test: SplitEmbeddings
    embed_text: Callable[[list[str]], Tensor] | None
    seed: int = 0
    generate_captions: CaptionGenerator | None = None
    notes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    """One measured task: its metrics, which one summarises it, and bookkeeping details."""

    task: str
    metrics: dict[str, float]
    primary: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.primary not in self.metrics:
            raise ValueError(
                f"TaskResult {self.task!r}: primary {self.primary!r} is not one of the metrics "
                f"{sorted(self.metrics)}"
            )

    @property
    def value(self) -> float:
        """The primary metric's value."""
        return self.metrics[self.primary]


class EvalTask(Protocol):
    """An evaluation task: built from its config, run on a context, one result per sub-task."""

    def run(self, ctx: EvalContext) -> list[TaskResult]: ...
