"""The device-name lookup behind the MFU figure: whole words, the most specific name first."""

from __future__ import annotations

import pytest

from alp_train.flops import peak_for_name


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0),
    ("NVIDIA H100 PCIe", 756.0),  # matched H100 (SXM): MFU understated
    ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A10", 125.0),
    ("NVIDIA L4", 121.0),
    ("NVIDIA L40S", 362.0),  # matched L4: MFU overstated 3x
    ("NVIDIA L40", 181.0),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_peak_by_device_name(name, peak):
    assert peak_for_name(name) == peak
