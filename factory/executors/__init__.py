"""Executors schedule shards, and do nothing else: in this process (``in_process``), in local worker
processes (``processes``), on ``accelerate launch`` ranks (``in_process`` again, each rank its share), or
as Ray tasks (``ray_tasks``). Every one makes a shard through the same template,
:func:`factory.shard.run_shard`, so a shard's failure and a full disk end the same way whichever runs it.

Each executor builds the pipeline where shards are made (once per process) and reports a recipe
that cannot be built (a missing or broken model) as a UserError from :meth:`start`, before the
output folder is touched. Shards are deterministic, so every executor writes the same bytes.
"""

from __future__ import annotations

from factory.errors import UserError
from factory.executors.base import Executor, ExecutorLost, Outcome, distributed_rank
from factory.executors.in_process import InProcess
from factory.executors.processes import LocalProcesses
from factory.executors.ray_tasks import RayExecutor

__all__ = ["EXECUTORS", "Executor", "ExecutorLost", "InProcess", "LocalProcesses", "Outcome", "RayExecutor",
           "choose", "distributed_rank"]

EXECUTORS = ("local", "ray")


def choose(executor: str = "local", workers: int = 1) -> Executor:
    """``local`` with ``workers`` processes (1: in this process), or ``ray`` over ``workers`` CPUs."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        return RayExecutor(cpus=workers if workers > 1 else None)
    return InProcess() if workers <= 1 else LocalProcesses(workers)
