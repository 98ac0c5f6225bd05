"""What every executor shares: its protocol, the messages its workers send, and the error for machinery
that died under the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Protocol

from factory import plan
from factory.dataset.stats import ShardStats
from factory.errors import UserError
from factory.files import DiskFull
from factory.recipe import Recipe
from factory.shard import ShardFailure

Outcome = ShardStats | ShardFailure


class ExecutorLost(UserError):
    """The machinery under the run died (every worker process, a Ray raylet, agent, node or worker): the
    run stops with one line; finished shards are kept and the same command resumes."""


class Executor(Protocol):
    rank: int
    world: int

    def assigned(self, tasks: list[plan.ShardTask]) -> list[plan.ShardTask]:
        """This process's share of the tasks (all of them, but on ``accelerate launch`` ranks)."""

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        """Build (and so check) the pipeline; raise UserError on a recipe that cannot run."""

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[Outcome]:
        """Make the shards through :func:`factory.shard.run_shard`; yield each outcome as it finishes."""

    def close(self) -> None:
        """Release workers; on ranks, wait for every rank."""


# What a worker process (local, or the Ray driver) tells the run, beside ("ready", _) and ("done", outcome):
# each of these stops the run with its one line.
STOPS = {
    "refused": UserError,  # the recipe cannot run here (a model that does not load, Ray not installed)
    "full": DiskFull,  # a shard found the disk full
    "lost": ExecutorLost,  # the machinery under the run died
    "crashed": lambda line: RuntimeError(f"a worker could not build the pipeline: {line}"),
}


def stop(kind: str, line: str) -> Exception:
    """The error a worker's stopping message stands for."""
    return STOPS[kind](line)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from accelerate when launched by it (or torchrun), else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes
