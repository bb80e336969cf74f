"""Starting ``train.nproc`` processes on this machine with torch's elastic launcher.

Each worker resolves the same config and calls :func:`alp_train.recipe.run` on the run folder
the parent made. When one rank raises, the launcher stops the others within its monitor
interval and this process reports that rank's traceback: a failing rank never hangs the job.
Multi-node jobs use ``torchrun`` (or the DeepSpeed launcher) on ``alp run`` directly: see the
README.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record

from alp_core import ALPError

__all__ = ["LaunchError", "LaunchPreempted", "launch", "worker_main"]


class LaunchError(ALPError):
    """A worker process failed; the message holds its rank and traceback."""


class LaunchPreempted(Exception):
    """The job stopped on SIGTERM/SIGINT (sent to this process or to a worker); the workers
    saved a checkpoint at their next step. ``exit_code`` is 128 + the signal's number."""

    def __init__(self, signum: int, run_dir: Path, detail: str = "") -> None:
        import signal

        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: the workers saved a checkpoint at their next "
                         f"step{' (' + detail + ')' if detail else ''}; resume with: alp run "
                         f"--resume {run_dir}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@record
def worker_main(raw: dict[str, Any], run_dir: str, resume: bool) -> str:
    """One rank: resolve the config (plugins load here too) and run the recipe."""
    import logging
    import os

    from alp_train.config import resolve_run
    from alp_train.recipe import run

    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    return str(run(resolve_run(raw), run_dir=run_dir, resume=resume))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(raw: dict[str, Any], run_dir: Path, nproc: int, resume: bool = False,
           monitor_interval: float = 0.2) -> Path:
    """Run ``nproc`` workers on this machine; raise :class:`LaunchError` if one fails."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"alp-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint=f"127.0.0.1:{_free_port()}", max_restarts=0,
        monitor_interval=monitor_interval, start_method="spawn")
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        elastic_launch(config, worker_main)(raw, str(run_dir), resume)
    except SignalException as err:  # this process got the signal; the agent stopped the ranks
        raise LaunchPreempted(int(err.sigval), run_dir) from None
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        detail = failure.message
        stack = ""
        if isinstance(detail, dict):  # the rank's error file: its message and its traceback
            stack = str((detail.get("extraInfo") or {}).get("py_callstack") or "")
            detail = detail.get("message", detail)
        if isinstance(detail, dict) or not detail:
            detail = str(failure)
        text = str(detail)
        if stack.strip():
            detail = stack.rstrip()  # the traceback ends with the message itself
        for name, number in (("SIGTERM", 15), ("SIGINT", 2)):  # a worker's clean preemption
            if f"Preempted: {name} received" in text:
                raise LaunchPreempted(number, run_dir, f"rank {rank}") from None
        raise LaunchError(f"rank {rank} failed (exit code {failure.exitcode}); its error:\n"
                          f"{detail}\nfiles already written in {run_dir} are kept") from None
    return run_dir
