"""Making a recipe's dataset: check the output folder, plan shards, let an executor make the ones
not yet finished, then seal the run with its manifest.

Finished shards (marker present) are skipped, so re-running the same command resumes a killed
run; the result equals an uninterrupted run byte for byte, whatever the executor.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from factory import plan
from factory.dataset.layout import is_done, read_manifest, read_recipe, write_recipe
from factory.dataset.manifest import write_manifest
from factory.errors import UserError
from factory.executors import Executor, InProcess
from factory.recipe import Resolved, check_paths

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    out: Path
    shards: int
    todo: int = 0
    made: list[dict] = field(default_factory=list)
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    manifest: dict | None = None


def prepare_output(resolved: Resolved, out: Path) -> None:
    """Check that ``out`` can hold this recipe's dataset before anything is written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not writable")
    previous = read_recipe(out)
    if previous is not None and previous["hash"] != resolved.hash:
        raise UserError(
            f"--out {out}: holds a dataset made by a different recipe (hash {previous['hash']}, "
            f"this one {resolved.hash}); choose a new output folder"
        )
    derived = (read_manifest(out) or {}).get("parent")
    if derived is not None:
        raise UserError(f"--out {out}: holds a version filtered from {derived['path']}; generating into it would "
                        "bring back the removed pairs; choose a new output folder")


def generate(resolved: Resolved, out: Path, executor: Executor | None = None,
             on_plan: Callable[[int], None] | None = None,
             on_shard: Callable[[dict], None] | None = None) -> RunResult:
    """Make every unfinished shard of the recipe in ``out`` and write the manifest.

    ``on_plan(n)`` is told how many shards this process will make; ``on_shard(stats)`` hears of each.
    """
    recipe = resolved.recipe
    executor = executor or InProcess()
    check_paths(resolved)
    prepare_output(resolved, out)
    tasks = plan.plan(recipe.output.count, recipe.output.shard_size, recipe.output.max_attempts)
    assigned = executor.assigned(tasks)
    todo = [t for t in assigned if not is_done(out, t)]
    result = RunResult(out=out, shards=len(tasks), todo=len(todo), skipped=len(assigned) - len(todo))
    if on_plan:
        on_plan(len(todo))
    if todo:
        executor.start(recipe, out, len(todo))  # a recipe that cannot run stops here, nothing written
    try:
        out.mkdir(parents=True, exist_ok=True)
        if executor.rank == 0:
            write_recipe(out, resolved)
        log.info("rank %d/%d: %d shards to make, %d already done", executor.rank, executor.world, len(todo),
                 result.skipped)
        for stats in executor.run(todo) if todo else ():
            (result.failed if "error" in stats else result.made).append(stats)
            if "error" in stats:
                log.error("shard %s failed:\n%s", stats["shard"], stats["error"])
            if on_shard:
                on_shard(stats)
    finally:
        executor.close()
    if executor.rank == 0 and all(is_done(out, t) for t in tasks):
        result.manifest = write_manifest(out, resolved, tasks)
    return result
