"""Metrics as JSON lines (flushed line by line) and, optionally, TensorBoard with the same keys.

Only rank 0 writes; other ranks get a :class:`NullLog`. A crash loses nothing already logged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from alp_core import ConfigError

__all__ = ["STEP_EVENTS", "MetricsLog", "NullLog", "read_metrics"]


#: Events that record a training step (what a resumed run logs again past its checkpoint).
STEP_EVENTS = ("train", "validation")


class MetricsLog:
    """Append-only JSONL file of ``{"event", "time", ...}`` records (+ TensorBoard scalars).

    ``resumed_at``: the step a resumed run continues from. The records of steps after it,
    which the stopped run logged and the resumed one logs again, are dropped first (the file
    rewritten atomically; TensorBoard purges them too), so every step is logged once.
    """

    def __init__(self, path: str | Path, tensorboard: bool = False,
                 resumed_at: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resumed_at is not None and self.path.is_file():
            self._drop_after(resumed_at)
        self._fh = self.path.open("a", encoding="utf-8")
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError("train.tensorboard: needs the tensorboard package "
                                  f"({err}); pip install 'alp-train[tensorboard]'") from None
            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"),
                                     purge_step=None if resumed_at is None else resumed_at + 1)

    def _drop_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by the kill: dropped
                continue
            late = record.get("event") in STEP_EVENTS and isinstance(record.get("step"), int) \
                and record["step"] > step
            if not late:
                kept.append(line if line.endswith("\n") else line + "\n")
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(self.path)

    def write(self, event: str, **values: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **values}
        self._fh.write(json.dumps(record, sort_keys=False) + "\n")
        self._fh.flush()
        step = values.get("step")
        if self._tb is not None and isinstance(step, int):
            for key, value in values.items():
                numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
                if key != "step" and numeric:
                    self._tb.add_scalar(f"{event}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullLog(MetricsLog):
    """What ranks other than 0 log to: nothing."""

    def __init__(self) -> None:  # noqa: D107 - nothing to open
        self._tb = None

    def write(self, event: str, **values: Any) -> None:
        return None

    def close(self) -> None:
        return None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
