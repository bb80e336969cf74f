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

    from alp_core import new_plugin_manager, resolve_component
    pm = new_plugin_manager()
    names = pm.names("objective")

    # every objective by name, driven through the step protocol (captioning with its ids)
    ids = {"bos_id": 0, "pad_id": 1, "eos_id": 2, "mask_id": 3, "vocab_size": 12}
    tokens = torch.tensor([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1], [0, 8, 9, 10, 2],
                           [0, 4, 2, 1, 1], [0, 6, 6, 2, 1], [0, 11, 2, 1, 1]])
    losses = {}
    for spec in ({"name": "infonce"}, {"name": "siglip"}, {"name": "captioning",
                  "parallel_probability": 0.5}, {"name": "coca"},
                 {"name": "weighted-sum", "terms": [{"name": "siglip", "weight": 0.5},
                                                    {"name": "captioning"}]}):
        objective = resolve_component(pm, "objective", spec, "objective").build(
            special_ids=ids, plugin_manager=pm)
        step = {"clip_ids": torch.tensor([1, 1, 2, 3, 4, 5]), "caption_ids": tokens}
        step.update(objective.prepare(step))
        unit = torch.nn.functional.normalize
        step["audio_embeds"] = unit(torch.randn(6, 8).requires_grad_(), dim=-1)
        step["text_embeds"] = unit(torch.randn(6, 8).requires_grad_(), dim=-1)
        step["caption_logits"] = torch.randn(6, 4, 12, requires_grad=True)
        out = objective.compute(step)
        out.loss.backward()
        losses[spec["name"]] = out.loss.item()

    heavy = sorted(m for m in sys.modules if m.split(".")[0] in {
        "transformers", "torchaudio", "alp_data", "alp_models", "alp_eval", "alp_cli"})
    installed = sorted(d.metadata["Name"] for d in md.distributions())
    print(json.dumps({"loss": losses["infonce"], "losses": losses, "objectives": names,
                      "heavy": heavy, "installed": installed}))
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
    assert {"infonce", "siglip", "captioning", "coca", "weighted-sum"} <= set(
        result["objectives"])
    assert result["loss"] > 0
    assert set(result["losses"]) == {"infonce", "siglip", "captioning", "coca", "weighted-sum"}
    assert all(value > 0 for value in result["losses"].values())
