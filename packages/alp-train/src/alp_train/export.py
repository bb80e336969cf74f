"""Export a run's weights as one plain ``model.safetensors`` (what evaluation reads).

A checkpoint that holds the gathered ``model.safetensors`` is copied; one that holds only
DeepSpeed ZeRO shards (``train.engine.gather_on_save=false``) is converted with DeepSpeed's
own ``zero_to_fp32`` (which reads DeepSpeed's shard files: only export checkpoints your own
runs wrote).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from alp_core import ConfigError
from alp_train.checkpoint import WEIGHTS, latest_checkpoint, save_model
from alp_train.engines.deepspeed_engine import DS_TAG

__all__ = ["export_weights"]


def export_weights(run_dir: str | Path, out: str | Path, checkpoint: str | None = None) -> Path:
    """Write the weights of ``checkpoint`` (default: the newest) of ``run_dir`` to ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    source = run_dir / "checkpoints" / checkpoint if checkpoint else latest_checkpoint(run_dir)
    if source is None or not source.is_dir():
        raise ConfigError(f"alp export: no checkpoint {checkpoint or '(newest)'} under "
                          f"{run_dir / 'checkpoints'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if (source / WEIGHTS).is_file():
        shutil.copyfile(source / WEIGHTS, out)
        return out
    shards = source / "deepspeed"
    if not (shards / DS_TAG).is_dir():
        raise ConfigError(f"alp export: {source} holds neither {WEIGHTS} nor DeepSpeed shards")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(shards), tag=DS_TAG)
    save_model(out.parent, {k: v.contiguous() for k, v in state.items()})
    if out.name != WEIGHTS:
        (out.parent / WEIGHTS).replace(out)
    return out
