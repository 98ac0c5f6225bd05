"""Running a recipe: shards made in one process, in local worker processes, or across accelerate ranks.

Shards are independent tasks. Finished shards (marker present) are skipped, so re-running the same
command resumes a killed run; the result equals an uninterrupted run byte for byte.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from factory import dataset, plan
from factory.errors import UserError
from factory.pipeline import Pipeline, build_pipeline
from factory.recipe import Resolved
from factory.sample import Sample
from factory.writer import ShardWriter, is_done

log = logging.getLogger(__name__)


def _timed(stream: Iterator[Sample], name: str, clock: dict[str, float]) -> Iterator[Sample]:
    """Adds the time spent producing each item (this stage and everything upstream) to clock[name]."""
    while True:
        start = time.perf_counter()
        try:
            item = next(stream)
        except StopIteration:
            clock[name] = clock.get(name, 0.0) + time.perf_counter() - start
            return
        clock[name] = clock.get(name, 0.0) + time.perf_counter() - start
        yield item


def _passing(stream: Iterable[Sample], rejects: list[dict]) -> Iterator[Sample]:
    """Drops rejected samples from the stream, keeping a status row for each."""
    for sample in stream:
        if sample.reject_reason is None:
            yield sample
        else:
            item = (sample.meta.get("source") or {}).get("item")
            rejects.append({"key": sample.key, "item": item, "reason": sample.reject_reason})


def make_shard(pipeline: Pipeline, task: plan.ShardTask, out: Path, recipe_seed: int) -> dict:
    """Make one shard: candidates flow through every stage until ``task.size`` samples are accepted."""
    rejects: list[dict] = []
    cumulative: dict[str, float] = {}
    attempted = 0

    def candidates() -> Iterator[Sample]:
        nonlocal attempted
        for attempt in range(task.attempts):
            key, index = task.candidate(attempt)
            attempted += 1
            yield pipeline.source.load(Sample.create(key, index, recipe_seed))

    names = ["source"] + [stage.name for stage in pipeline.stages]
    stream = _timed(candidates(), "source", cumulative)
    for stage in pipeline.stages:
        stream = _timed(stage(_passing(stream, rejects)), stage.name, cumulative)
    stream = _passing(stream, rejects)

    writer = ShardWriter(out, task)
    started = time.perf_counter()
    try:
        for sample in stream:
            write_start = time.perf_counter()
            writer.write(sample)
            cumulative["write"] = cumulative.get("write", 0.0) + time.perf_counter() - write_start
            if writer.count == task.size:
                break
        stream.close()
    except BaseException:
        writer.abort()
        raise
    # each clock holds its stage plus everything upstream; subtract to get the stage's own time
    seconds, upstream = {}, 0.0
    for name in names:
        seconds[name] = round(cumulative.get(name, 0.0) - upstream, 4)
        upstream = cumulative.get(name, 0.0)
    seconds["write"] = round(cumulative.get("write", 0.0), 4)
    stats = {
        "shard": task.name,
        "planned": task.size,
        "attempted": attempted,
        "accepted": writer.count,
        "rejected": dict(Counter(r["reason"] for r in rejects)),
        "rejects": rejects,
        "seconds": seconds,
        "wall_seconds": round(time.perf_counter() - started, 4),
    }
    writer.finish(stats)
    if writer.count < task.size:
        log.warning("shard %s: only %d of %d samples after %d candidates", task.name, writer.count, task.size, attempted)
    return stats


# --- local worker processes: each builds the pipeline once, then takes shards ---------------------

_WORKER: dict = {}


def _init_worker(recipe_dict: dict, origin: str, out: str, threads: int) -> None:
    # N workers share the cores: each gets its slice for OpenCV and PyTorch (read when torch loads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import cv2

    cv2.setNumThreads(threads)
    from factory import recipe as recipes

    resolved = Resolved(recipes.validate(recipe_dict, origin), origin)
    _WORKER.update(pipeline=build_pipeline(resolved.recipe), seed=resolved.recipe.seed, out=Path(out))


def _attempt(pipeline: Pipeline, task: plan.ShardTask, out: Path, recipe_seed: int) -> dict:
    """A shard's stats, or its traceback: a failed shard is retried by the next run, the others go on."""
    try:
        return make_shard(pipeline, task, out, recipe_seed)
    except Exception:
        return {"shard": task.name, "error": traceback.format_exc()}


def _work(task: plan.ShardTask) -> dict:
    return _attempt(_WORKER["pipeline"], task, _WORKER["out"], _WORKER["seed"])


@dataclass
class RunResult:
    out: Path
    shards: int
    made: list[dict] = field(default_factory=list)
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    manifest: dict | None = None


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from accelerate when launched by it (or torchrun), else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


def prepare_output(resolved: Resolved, out: Path) -> None:
    """Check that ``out`` can hold this recipe's dataset before anything is written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not writable")
    previous = dataset.read_recipe(out)
    if previous is not None and previous["hash"] != resolved.hash:
        raise UserError(
            f"--out {out}: holds a dataset made by a different recipe (hash {previous['hash']}, "
            f"this one {resolved.hash}); choose a new output folder"
        )


def run(resolved: Resolved, out: Path, workers: int = 1, on_shard: Callable[[dict], None] | None = None) -> RunResult:
    """Make every unfinished shard of the recipe in ``out`` and write the manifest."""
    recipe = resolved.recipe
    prepare_output(resolved, out)
    rank, world = distributed_rank()
    tasks = plan.plan(recipe.output.count, recipe.output.shard_size, recipe.output.max_attempts)
    assigned = plan.assign(tasks, rank, world)
    mine = [t for t in assigned if not is_done(out, t)]
    # Missing folders and checkpoints are the user's mistakes: build (and so check) every stage before
    # writing anything. With worker processes, each builds its own copy and this one is only a check.
    pipeline = build_pipeline(recipe) if mine else None
    result = RunResult(out=out, shards=len(tasks), skipped=len(assigned) - len(mine))
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        dataset.write_recipe(out, resolved)
    log.info("rank %d/%d: %d shards to make, %d already done", rank, world, len(mine), result.skipped)

    def collect(stats: dict) -> None:
        (result.failed if "error" in stats else result.made).append(stats)
        if "error" in stats:
            log.error("shard %s failed:\n%s", stats["shard"], stats["error"])
        if on_shard:
            on_shard(stats)

    if mine and workers <= 1:
        for task in mine:
            collect(_attempt(pipeline, task, out, recipe.seed))
    elif mine:
        pipeline = None
        context = mp.get_context("spawn")
        processes = min(workers, len(mine))
        init = (resolved.to_dict(), resolved.origin, str(out), max(1, (os.cpu_count() or 1) // processes))
        with context.Pool(processes, initializer=_init_worker, initargs=init) as pool:
            for stats in pool.imap_unordered(_work, mine):
                collect(stats)
    if world > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()
    if rank == 0 and all(is_done(out, t) for t in tasks):
        result.manifest = dataset.write_manifest(out, resolved, tasks)
    return result
