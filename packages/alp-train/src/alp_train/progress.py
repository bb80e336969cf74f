"""The progress bar: loss, samples/s, hours of audio per second and the ETA (rank 0 only)."""

from __future__ import annotations

from typing import Any

__all__ = ["ProgressBar"]


class ProgressBar:
    """A tqdm bar over optimizer steps; a no-op when disabled (other ranks, ``progress=false``)."""

    def __init__(self, total: int, initial: int = 0, enabled: bool = True) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc="train", unit="step",
                             dynamic_ncols=True, mininterval=1.0)

    def update(self, step: int, *, loss: float, elapsed: float, done: int, samples: float,
               audio_s: float) -> None:
        if self._bar is None:
            return
        self._bar.update(step - self._bar.n)
        rate = samples / max(elapsed, 1e-9)
        self._bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.0f}",
                              audio_h_s=f"{audio_s / 3600 / max(elapsed, 1e-9):.3f}",
                              refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
