"""Shards one after another in this process; under ``accelerate launch``, this rank's share."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from factory import plan
from factory.executors.base import Outcome, distributed_rank
from factory.pipeline import build_pipeline
from factory.recipe import Recipe
from factory.shard import run_shard


class InProcess:
    """Shards one after another in this process; under ``accelerate launch``, this rank's share."""

    def __init__(self):
        self.rank, self.world = distributed_rank()
        self.pipeline = None

    def assigned(self, tasks: list[plan.ShardTask]) -> list[plan.ShardTask]:
        return plan.assign(tasks, self.rank, self.world)

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        self.recipe, self.out = recipe, out
        self.pipeline = build_pipeline(recipe)

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[Outcome]:
        for task in tasks:
            yield run_shard(self.pipeline, task, self.out, self.recipe.seed)

    def close(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()
