"""Preemption: SIGTERM/SIGINT set a flag; the loop saves a checkpoint at the next step and stops.

A second signal of the same kind while saving is ignored, so a checkpoint is never cut short
by an impatient double Ctrl-C (a SIGKILL still is, and the previous checkpoint stays intact).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["Preempted", "StopFlag"]


class Preempted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, signum: int, step: int, checkpoint: str) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: saved a checkpoint at step {step} ({checkpoint}); "
                         "resume with: alp run --resume <run folder>")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopFlag:
    """Installs SIGTERM/SIGINT handlers (main thread only) that record the signal."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = self.signum or signum

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]  # what signal() returned
        self._previous.clear()

    @property
    def raised(self) -> bool:
        return self.signum is not None
