"""Export a run's weights as one plain ``model.safetensors`` (what evaluation reads).

A checkpoint that holds the gathered ``model.safetensors`` is copied; one that holds only
DeepSpeed ZeRO shards (``train.engine.gather_on_save=false``) is converted with DeepSpeed's
own ``zero_to_fp32`` (which reads DeepSpeed's shard files: only export checkpoints your own
runs wrote).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from alp_core import ConfigError
from alp_train.checkpoint import WEIGHTS, latest_checkpoint, save_model
from alp_train.engines.deepspeed_engine import DS_TAG

__all__ = ["export_weights"]


def export_weights(run_dir: str | Path, out: str | Path, checkpoint: str | None = None) -> Path:
    """Write the weights of ``checkpoint`` of ``run_dir`` to ``out``; by default the run's
    final model (``checkpoint/model.safetensors``, what evaluation read), else (a run that
    did not finish) its newest training checkpoint."""
    run_dir, out = Path(run_dir), Path(out)
    final = run_dir / "checkpoint"
    if checkpoint:
        source: Path | None = run_dir / "checkpoints" / checkpoint
    else:
        source = final if (final / WEIGHTS).is_file() else latest_checkpoint(run_dir)
    if source is None or not source.is_dir():
        raise ConfigError(f"alp export: no final model under {final} and no checkpoint "
                          f"{checkpoint or '(newest)'} under {run_dir / 'checkpoints'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if (source / WEIGHTS).is_file():
        shutil.copyfile(source / WEIGHTS, out)
        return out
    shards = source / "deepspeed"
    if not (shards / DS_TAG).is_dir():
        raise ConfigError(f"alp export: {source} holds neither {WEIGHTS} nor DeepSpeed shards")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(shards), tag=DS_TAG)
    # written in a folder of its own, then moved: a model.safetensors beside out stays
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        save_model(scratch, {k: v.contiguous() for k, v in state.items()})
        (scratch / WEIGHTS).replace(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out
