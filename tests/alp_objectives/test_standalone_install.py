"""alp-objectives installs and runs in a fresh virtual environment that holds only torch.

Slow (a new venv with torch), but it runs in CI: it is the promise made to users who
`pip install alp-objectives` for their own training loop.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[2]

SCRIPT = textwrap.dedent("""
    import importlib.metadata as md
    import json
    import sys

    import torch
    import alp_objectives
    from alp_objectives import InfoNCELoss, InfoNCEConfig

    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 8, requires_grad=True), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(6, 8, requires_grad=True), dim=-1)
    ids = torch.tensor([1, 1, 2, 3, 4, 5])
    out = InfoNCELoss(InfoNCEConfig(learnable_temperature=True))(a, t, ids)
    out.loss.backward()

    from alp_core import new_plugin_manager
    names = new_plugin_manager().names("objective")

    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {
        "transformers", "torchaudio", "alp_data", "alp_models", "alp_eval", "alp_cli"})
    installed = sorted(d.metadata["Name"] for d in md.distributions())
    print(json.dumps({"loss": out.loss.item(), "objectives": names, "heavy": heavy,
                      "installed": installed}))
""")


@pytest.mark.slow
def test_objectives_install_and_run_with_only_torch(tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = str(env_dir / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # the wheel already on this machine
    subprocess.run([*pip, torch_pin], check=True, capture_output=True, text=True)
    subprocess.run([*pip, str(ROOT / "packages" / "alp-core"),
                    str(ROOT / "packages" / "alp-objectives")],
                   check=True, capture_output=True, text=True)
    out = subprocess.run([py, "-c", SCRIPT], check=True, capture_output=True, text=True,
                         cwd=tmp_path)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    installed = {name.lower() for name in result["installed"]}
    assert {"alp-core", "alp-objectives", "torch", "pluggy", "pydantic"} <= installed
    assert not installed & {"transformers", "torchaudio", "alp-data", "alp-models", "alp-eval",
                            "alp-cli", "numpy"}
    assert "infonce" in result["objectives"]
    assert result["loss"] > 0
