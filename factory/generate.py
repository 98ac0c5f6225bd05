"""Making a recipe's dataset: check the output folder, plan shards, let an executor make the ones
not yet finished, then seal the run with its manifest.

Finished shards (marker present, tar of the recorded size and sha256) are skipped, so re-running the
same command resumes a killed run; the result equals an uninterrupted run byte for byte, whatever
the executor. One run at a time: the output folder is locked.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from factory import plan
from factory.config import dotted, path_fields
from factory.dataset.card import CARD
from factory.dataset.layout import finished_shards, is_done, read_manifest, read_marker, read_recipe, write_recipe
from factory.dataset.manifest import write_manifest
from factory.errors import Interrupted, UserError
from factory.files import FolderLock, disk_full, folder_entries, output_folder, refuse_link, remove_debris
from factory.dataset.stats import ShardStats
from factory.executors import Executor, ExecutorLost, InProcess
from factory.recipe import Resolved, check_paths
from factory.shard import ShardFailure

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    out: Path
    shards: int
    todo: int = 0
    made: list[ShardStats] = field(default_factory=list)
    skipped: int = 0
    failed: list[ShardFailure] = field(default_factory=list)
    manifest: dict | None = None
    sealed_before: bool = False  # every shard was finished and the manifest written by an earlier run


OWN_ENTRIES = {"shards", "stats", "recipe.json"}


def prepare_output(resolved: Resolved, out: Path, tasks: list[plan.ShardTask], rank: int = 0) -> None:
    """Check that ``out`` can hold this recipe's dataset before anything is written: a folder, not
    inside a folder the recipe reads, empty or a dataset of this recipe, holding no more shards than planned."""
    output_folder(out)
    inside = out.resolve()
    for loc, path in path_fields(resolved.recipe):
        if path.is_dir() and (inside == path.resolve() or path.resolve() in inside.parents):
            raise UserError(f"--out {out}: is inside {dotted(loc)} ({path}), which the run reads; its own files "
                            "would become inputs. Choose a folder outside it")
    previous = read_recipe(out)
    entries = {p.name for p in folder_entries(out) if not p.name.startswith(".recipe.json.")}  # rank 0 writing it
    if previous is None and entries and not (rank > 0 and entries <= OWN_ENTRIES):
        shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
        raise UserError(f"--out {out}: not empty ({shown}) and not a toonfactory dataset (no recipe.json); "
                        "choose a new or empty folder")
    if previous is not None and previous["hash"] != resolved.hash:
        raise UserError(
            f"--out {out}: holds a dataset made by a different recipe (hash {previous['hash']}, "
            f"this one {resolved.hash}); choose a new output folder"
        )
    surplus = [f"{index:05d}" for index, marker in sorted(finished_shards(out).items())
               if index >= len(tasks) or marker.get("size", 0) > tasks[index].size]
    if surplus:
        count = resolved.recipe.output.count
        raise UserError(f"--out {out}: holds finished shard(s) {', '.join(surplus[:4])}{', ...' if len(surplus) > 4 else ''} "
                        f"beyond output.count={count}; a dataset is never shrunk in place: raise output.count "
                        "or choose a new folder")
    for folder in ("shards", "stats"):  # before a shard starts: in a worker this would be a failed shard, not one line
        refuse_link(out / folder)
    derived = (read_manifest(out) or {}).get("parent")
    if derived is not None:
        raise UserError(f"--out {out}: holds a version filtered from {derived['path']}; generating into it would "
                        "bring back the removed pairs; choose a new output folder")


def sealed(out: Path, resolved: Resolved, tasks: list[plan.ShardTask]) -> dict | None:
    """The manifest (and card) an earlier run of this recipe wrote over exactly these finished shards;
    None when the run is still to be sealed."""
    manifest = read_manifest(out)
    if not manifest or manifest.get("recipe_hash") != resolved.hash or not (out / CARD).is_file():
        return None
    recorded = [(shard.get("name"), shard.get("sha256")) for shard in manifest.get("shards", [])]
    markers = [(f"{task.name}.tar", (read_marker(out, task.name) or {}).get("sha256")) for task in tasks]
    return manifest if recorded == markers else None


def generate(resolved: Resolved, out: Path, executor: Executor | None = None,
             on_plan: Callable[[int, int], None] | None = None,
             on_shard: Callable[[ShardStats | ShardFailure], None] | None = None) -> RunResult:
    """Make every unfinished shard of the recipe in ``out`` and write the manifest.

    ``on_plan(todo, done)`` is told how many shards this process will make and how many of its share
    were already done, once every check passed and the pipeline is built (so before any shard starts,
    and never before a mistake is reported); ``on_shard(outcome)`` hears of each shard made or failed. A run sealed
    before (``RunResult.sealed_before``) writes nothing.
    ``out`` is locked for the run (rank 0 holds the lock for every rank).
    """
    executor = executor or InProcess()
    check_paths(resolved, factory_only=True)
    output_folder(out)
    lock = FolderLock(out, f"toonfactory generate {resolved.origin}") if executor.rank == 0 else nullcontext()
    with lock:
        return _generate(resolved, out, executor, on_plan, on_shard)


def _generate(resolved: Resolved, out: Path, executor: Executor, on_plan, on_shard) -> RunResult:
    recipe = resolved.recipe
    tasks = plan.plan(recipe.output.count, recipe.output.shard_size, recipe.output.max_attempts)
    prepare_output(resolved, out, tasks, executor.rank)
    if executor.rank == 0 and out.is_dir():
        remove_debris(out)  # a killed run's temporary files (a live rank's are flocked, so kept)
    assigned = executor.assigned(tasks)
    todo = [t for t in assigned if not is_done(out, t, verify=True)]
    result = RunResult(out=out, shards=len(tasks), todo=len(todo), skipped=len(assigned) - len(todo))
    if todo:
        executor.start(recipe, out, len(todo))  # a recipe that cannot run stops here, nothing written
    elif executor.rank == 0:
        result.manifest = sealed(out, resolved, tasks)
        result.sealed_before = result.manifest is not None
    if on_plan:
        on_plan(len(todo), result.skipped)

    def kept() -> str:
        done = sum(is_done(out, t) for t in tasks)
        return f"{done} of {len(tasks)} shards finished and kept in {out}"

    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            if executor.rank == 0 and not result.sealed_before:
                write_recipe(out, resolved)
            log.info("rank %d/%d: %d shards to make, %d already done", executor.rank, executor.world, len(todo),
                     result.skipped)
            for outcome in executor.run(todo) if todo else ():
                if isinstance(outcome, ShardFailure):
                    result.failed.append(outcome)
                    log.error("shard %s failed:\n%s", outcome.shard, outcome.error)
                else:
                    result.made.append(outcome)
                if on_shard:
                    on_shard(outcome)
        finally:
            executor.close()  # on ranks: every rank's shards are done after this
        if executor.rank == 0 and not result.sealed_before and all(is_done(out, t) for t in tasks):
            result.manifest = write_manifest(out, resolved, tasks)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {kept()}; re-run the same command to resume") from None
    except OSError as exc:
        full = disk_full(exc, f"{kept()}; free some space and re-run the same command to resume")
        if full is None:
            raise
        raise full from None
    except ExecutorLost as exc:  # the workers or the Ray cluster died under the run
        raise UserError(f"{exc}; {kept()}; re-run the same command to resume") from None
    except UserError as exc:  # a disk that filled up under a shard (here or in a worker)
        raise UserError(f"{exc}; {kept()}; free some space and re-run the same command to resume") from None
    return result
