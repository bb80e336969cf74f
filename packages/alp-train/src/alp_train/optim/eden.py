"""Eden: Zipformer's learning-rate schedule, decaying with both batch count and epoch.

After Yao et al., "Zipformer" (ICLR 2024) and icefall's ``Eden`` (Apache-2.0)::

    lr = base_lr * ((step**2 + lr_batches**2) / lr_batches**2) ** -0.25
                 * ((epoch**2 + lr_epochs**2) / lr_epochs**2) ** -0.25
                 * warmup

where ``warmup`` rises linearly from ``warmup_start`` at step 0 to 1 at ``warmup_batches``
and stays 1.  The lr is flat for the first ``lr_batches`` steps / ``lr_epochs`` epochs and then
decays like ``step**-0.5`` and ``epoch**-0.5``.  Epochs may be fractional.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["Eden", "eden_factor"]


def eden_factor(
    step: float,
    epoch: float,
    lr_batches: float = 7500.0,
    lr_epochs: float = 3.5,
    warmup_batches: float = 500.0,
    warmup_start: float = 0.5,
) -> float:
    """Return the Eden multiplier of the base lr at ``step`` (batches) and ``epoch``.

    Defaults are the Zipformer LibriSpeech recipe's (icefall's recipe itself passes
    ``warmup_start=0.1``).
    """
    batch_factor = ((step**2 + lr_batches**2) / lr_batches**2) ** -0.25
    epoch_factor = ((epoch**2 + lr_epochs**2) / lr_epochs**2) ** -0.25
    if step >= warmup_batches:
        warmup = 1.0
    else:
        warmup = warmup_start + (1.0 - warmup_start) * step / warmup_batches
    return batch_factor * epoch_factor * warmup


class Eden(LRScheduler):
    """Set each param group's lr to ``base_lr * eden_factor(batch, epoch, ...)``.

    Two ways to drive it:

    * icefall style: ``step_batch(batch)`` with the global batch index and
      ``step_epoch(epoch)`` at the start of each epoch (either may omit its argument to
      advance by one; ``epoch`` may be a float);
    * torch style: ``step()`` once after each ``optimizer.step()``.  With
      ``steps_per_epoch`` set, the (fractional) epoch is then ``batch / steps_per_epoch``,
      so a loop that only calls ``step()`` gets both decays.

    The constructor sets the step-0 lr (``base_lr * warmup_start``), like other torch
    schedulers.  ``state_dict()`` / ``load_state_dict()`` round-trip the counters, and
    loading re-applies the lr so the next optimizer step uses the restored value.
    """

    #: where it stands (kept across a resume; its settings come from the resumed config)
    position_keys = ("last_epoch", "_step_count", "batch", "epoch")

    def __init__(
        self,
        optimizer: Optimizer,
        lr_batches: float = 7500.0,
        lr_epochs: float = 3.5,
        warmup_batches: float = 500.0,
        warmup_start: float = 0.5,
        steps_per_epoch: float | None = None,
    ) -> None:
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError("lr_batches and lr_epochs must be positive")
        if warmup_batches < 0:
            raise ValueError(f"warmup_batches must be >= 0, got {warmup_batches}")
        if not 0.0 <= warmup_start <= 1.0:
            raise ValueError(f"warmup_start must be in [0, 1], got {warmup_start}")
        if steps_per_epoch is not None and steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
        self.lr_batches = lr_batches
        self.lr_epochs = lr_epochs
        self.warmup_batches = warmup_batches
        self.warmup_start = warmup_start
        self.steps_per_epoch = steps_per_epoch
        self.epoch: float = 0.0
        # The base constructor takes one initial step(), which brings the counter to 0.
        self.batch: int = -1
        super().__init__(optimizer)

    def get_lr(self) -> list[float | Tensor]:
        """Return the lr of every param group for the current batch and epoch."""
        factor = eden_factor(
            self.batch,
            self.epoch,
            self.lr_batches,
            self.lr_epochs,
            self.warmup_batches,
            self.warmup_start,
        )
        return [float(base_lr) * factor for base_lr in self.base_lrs]

    def step(self, epoch: int | None = None) -> None:
        """Advance the batch counter by one and set the lrs (call after ``optimizer.step()``)."""
        if epoch is not None:
            raise ValueError("Eden.step() takes no epoch; use step_epoch(epoch)")
        self._step_count += 1
        self.step_batch()

    def step_batch(self, batch: int | None = None) -> None:
        """Set the global batch index (or advance it by one) and set the lrs."""
        self.batch = self.batch + 1 if batch is None else batch
        if self.steps_per_epoch is not None:
            self.epoch = self.batch / self.steps_per_epoch
        self._apply()

    def step_epoch(self, epoch: float | None = None) -> None:
        """Set the epoch (call at the start of an epoch) or advance it by one, and set the lrs."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self._apply()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the counters and settings, then re-apply the lr they imply."""
        super().load_state_dict(state_dict)
        self._apply()

    def _apply(self) -> None:
        """Write ``get_lr()`` into the optimizer's param groups."""
        self.last_epoch = self.batch  # torch's name for the step counter
        values: list[float | Tensor] = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values, strict=True):
            group["lr"] = lr
        self._last_lr = values
