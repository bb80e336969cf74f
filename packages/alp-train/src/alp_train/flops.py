"""FLOPs of one training step (forward + backward), for a model-FLOPs-utilisation estimate.

Counted once, on the first step, with ``torch.utils.flop_counter`` (matrix products and
convolutions, the work that dominates); MFU = FLOPs per step x steps/s / the device's peak.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch

__all__ = ["PEAK_TFLOPS", "count_step_flops", "mfu", "peak_for_name", "peak_tflops"]

PEAK_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.0, "H200": 989.0,
               "A100": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10": 125.0}
"""Dense bf16 tensor-core peaks (no sparsity) by device name, in TFLOP/s: matched as whole
words, the most specific first (``L4`` is not ``L40S``, the H100 PCIe and NVL are not the
SXM part)."""


def count_step_flops(step: Callable[[], None]) -> float:
    """Run ``step`` (a forward + backward) under the FLOP counter; return its FLOPs."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def peak_tflops(device: torch.device) -> float | None:
    """The bf16 peak of ``device`` when known (None on the CPU and unknown GPUs)."""
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def peak_for_name(name: str) -> float | None:
    """The bf16 peak of a device called ``name`` (``torch.cuda.get_device_name``), or None."""
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", name):
            return PEAK_TFLOPS[key]
    return None


def mfu(flops_per_step: float, steps_per_s: float, device: torch.device) -> float | None:
    peak = peak_tflops(device)
    return None if peak is None else flops_per_step * steps_per_s / (peak * 1e12)
