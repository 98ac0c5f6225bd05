"""One shard: candidates stream through every stage until the shard is full, then it is written.

A shard is the unit of work and of retry. Its stats record every attempted candidate (accepted,
or rejected with its reason) and the seconds each stage took.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from factory import plan
from factory.dataset.layout import is_done, shard_outputs
from factory.dataset.stats import ShardStats
from factory.dataset.writer import ShardWriter
from factory.files import disk_full
from factory.pipeline import Pipeline
from factory.sample import Sample

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


def make_shard(pipeline: Pipeline, task: plan.ShardTask, out: Path, recipe_seed: int) -> ShardStats:
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
    stats = ShardStats(shard=task.name, planned=task.size, attempted=attempted, accepted=writer.count,
                       rejected=dict(Counter(r["reason"] for r in rejects)), rejects=rejects, seconds=seconds,
                       wall_seconds=round(time.perf_counter() - started, 4))
    writer.finish(stats)
    if writer.count < task.size:
        log.warning("shard %s: only %d of %d samples after %d candidates", task.name, writer.count, task.size, attempted)
    return stats


@dataclass(frozen=True)
class ShardFailure:
    """A shard whose own code raised: the run goes on, the next run retries it."""

    shard: str
    error: str  # the traceback, for the log


def run_shard(pipeline: Pipeline, task: plan.ShardTask, out: Path, recipe_seed: int) -> ShardStats | ShardFailure:
    """The per-shard template every executor goes through (in this process, in worker processes, as a Ray
    task): a shard an earlier try finished is read back, not made again; a shard that raises is a
    ShardFailure and the others go on. A full disk stops the run (DiskFull): every other shard would
    fail the same way."""
    paths = shard_outputs(out, task.name)
    # a retried task whose first try finished (its tar checked against the marker's sha256: a shard the
    # run chose to remake because its tar changed is not taken back); no marker, the usual case, costs nothing
    if is_done(out, task, verify=True) and (done := ShardStats.read(paths["stats"])) is not None:
        return done
    try:
        return make_shard(pipeline, task, out, recipe_seed)
    except OSError as exc:
        full = disk_full(exc, f"shard {task.name} not finished")
        if full is not None:
            raise full from None
        return ShardFailure(task.name, traceback.format_exc())
    except Exception:
        return ShardFailure(task.name, traceback.format_exc())
