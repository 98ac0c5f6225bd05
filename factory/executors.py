"""Executors schedule shards, and do nothing else: in this process, in local worker processes, on
``accelerate launch`` ranks, or as Ray tasks.

Each executor builds the pipeline where shards are made (once per process) and reports a recipe
that cannot be built (a missing or broken model) as a UserError from :meth:`start`, before the
output folder is touched. Shards are deterministic, so every executor writes the same bytes.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
from pathlib import Path
from typing import Iterator, Protocol

from factory import plan
from factory.dataset.layout import is_done, read_json, shard_outputs
from factory.errors import UserError
from factory.pipeline import build_pipeline
from factory.recipe import Recipe
from factory.shard import attempt, make_shard

log = logging.getLogger(__name__)

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    rank: int
    world: int

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        """Build (and so check) the pipeline; raise UserError on a recipe that cannot run."""

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[dict]:
        """Make the shards; yield each one's stats (or ``{"shard", "error"}``) as it finishes."""

    def close(self) -> None:
        """Release workers; on ranks, wait for every rank."""


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from accelerate when launched by it (or torchrun), else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes


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

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[dict]:
        for task in tasks:
            yield attempt(self.pipeline, task, self.out, self.recipe.seed)

    def close(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


# --- local worker processes --------------------------------------------------------------------


# Imported once in the fork server, before any thread exists; workers fork from it ready to build.
PRELOAD = ["factory.pipeline", "factory.kinds", "cv2", "torch", "albumentations", "mediapipe", "warping.warp"]


PR_SET_PDEATHSIG = 1


def die_with(parent_pid: int) -> None:
    """End this worker when its parent goes: the kernel kills it when the fork server (its parent
    process) exits, which that server does when the run's process dies; a thread also watches the
    run's process itself. Ctrl-C is the parent's to handle."""
    import ctypes
    import signal
    import threading
    import time

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the thread below still watches
        pass

    def watch() -> None:
        while True:
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass
            if os.getppid() != server:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != server:  # the server went before the kernel was told to watch it
        os._exit(1)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker(recipe: Recipe, out: str, threads: int, tasks: mp.Queue, results: mp.Queue, parent_pid: int) -> None:
    """A worker process: build the pipeline once, say so, then make shards until told to stop."""
    import cv2
    import torch

    die_with(parent_pid)
    cv2.setNumThreads(threads)  # N workers share the cores
    torch.set_num_threads(threads)
    try:
        pipeline = build_pipeline(recipe)
    except UserError as exc:
        results.put(("refused", str(exc)))
        return
    except Exception as exc:  # reported to the parent, which stops the run
        results.put(("crashed", f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", os.getpid()))
    while (task := tasks.get()) is not None:
        try:
            results.put(("done", attempt(pipeline, task, Path(out), recipe.seed)))
        except UserError as exc:  # the disk is full: the parent stops the run
            results.put(("refused", str(exc)))
            return


class LocalProcesses:
    """``--workers N`` spawned processes that split the cores; each builds its pipeline once.

    Workers fork from a server that imported the heavy libraries once (started at once, while the
    recipe is read); the first worker to finish building proves the recipe runs, and shards flow
    from then on, so the others' model loading overlaps with the first shards.
    """

    rank, world = 0, 1

    def __init__(self, workers: int):
        self.workers = workers
        self.processes: list = []
        self.finished = False
        self.context = mp.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        from multiprocessing import forkserver

        forkserver.ensure_running()

    def assigned(self, tasks: list[plan.ShardTask]) -> list[plan.ShardTask]:
        return tasks

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        context = self.context
        self.tasks, self.results = context.Queue(), context.Queue()
        count = max(1, min(self.workers, shards))
        threads = max(1, (os.cpu_count() or 1) // count)
        self.processes = [context.Process(target=_worker, args=(recipe, str(out), threads, self.tasks, self.results, os.getpid()),
                                          name=f"toonfactory-worker-{n}", daemon=True) for n in range(count)]
        for process in self.processes:
            process.start()
        self.ready = 0
        while not self.ready:
            self._handle(self._next())

    def _next(self):
        """The next message from the workers; an error when none is left alive to send one."""
        while True:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                if not any(p.is_alive() for p in self.processes):
                    self.close()
                    raise RuntimeError("every worker process exited (see the log above)") from None

    def _handle(self, message) -> dict | None:
        kind, payload = message
        if kind == "ready":
            self.ready += 1
        elif kind == "refused":
            self.close()
            raise UserError(payload)
        elif kind == "crashed":
            self.close()
            raise RuntimeError(f"a worker could not build the pipeline: {payload}")
        return payload if kind == "done" else None

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[dict]:
        for task in tasks:
            self.tasks.put(task)
        for _ in self.processes:
            self.tasks.put(None)
        remaining = len(tasks)
        while remaining:
            stats = self._handle(self._next())
            if stats is not None:
                remaining -= 1
                yield stats
        self.finished = True

    def close(self) -> None:
        """Workers of a finished run exit by themselves; those of an interrupted one are ended now."""
        for process in self.processes:
            process.join(timeout=5 if self.finished else 0)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        self.processes = []


# --- Ray ---------------------------------------------------------------------------------------

_RAY_PIPELINES: dict = {}


def _ray_pipeline(recipe: Recipe):
    """The pipeline of this Ray worker process, built once per recipe (Ray reuses its workers)."""
    key = recipe.model_dump_json()
    if key not in _RAY_PIPELINES:
        _RAY_PIPELINES[key] = build_pipeline(recipe)
    return _RAY_PIPELINES[key]


def _ray_check(recipe: Recipe) -> str | None:
    try:
        _ray_pipeline(recipe)
    except UserError as exc:
        return str(exc)
    return None


def _ray_shard(recipe: Recipe, task: plan.ShardTask, out: str) -> dict:
    out = Path(out)
    if is_done(out, task):  # a retried task whose first try finished
        return read_json(shard_outputs(out, task.name)["stats"])
    return make_shard(_ray_pipeline(recipe), task, out, recipe.seed)


def wants_gpu(recipe: Recipe) -> bool:
    """Whether a section with a model asks for CUDA (``device: cuda...``, or ``auto`` on a model kind)."""
    sections = [recipe.source, recipe.teacher]
    return any(str(getattr(s, "device", "cpu")).startswith(("cuda", "auto")) for s in sections)


class RayExecutor:
    """One Ray task per shard: ``ray.init()`` joins ``RAY_ADDRESS`` when set, else starts a local
    cluster (``cpus`` of them). A task that fails is retried; a finished shard is skipped. Workers
    write into ``--out``, so a multi-node cluster needs it on shared storage."""

    rank, world = 0, 1

    def __init__(self, cpus: int | None = None, retries: int = 2):
        self.cpus, self.retries = cpus, retries

    def assigned(self, tasks: list[plan.ShardTask]) -> list[plan.ShardTask]:
        return tasks

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("--executor ray: ray is not installed (pip install 'toonfactory[ray]')") from None
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS") or None
            ray.init(address=address, num_cpus=None if address else self.cpus, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        gpus = 1 if wants_gpu(recipe) and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        options = dict(num_cpus=1, num_gpus=gpus)
        self.ray, self.recipe, self.out = ray, ray.put(recipe), str(out)
        problem = ray.get(ray.remote(**options)(_ray_check).remote(self.recipe))
        if problem:
            raise UserError(problem)
        self.shard = ray.remote(max_retries=self.retries, retry_exceptions=True, **options)(_ray_shard)

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[dict]:
        pending = {self.shard.remote(self.recipe, task, self.out): task for task in tasks}
        while pending:
            (done,), _ = self.ray.wait(list(pending), num_returns=1)
            task = pending.pop(done)
            try:
                yield self.ray.get(done)
            except self.ray.exceptions.RayError as exc:
                yield {"shard": task.name, "error": str(exc)}

    def close(self) -> None:
        """The cluster stays up for the process (a local one ends with it)."""


def choose(executor: str = "local", workers: int = 1) -> Executor:
    """``local`` with ``workers`` processes (1: in this process), or ``ray`` over ``workers`` CPUs."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if executor == "ray":
        return RayExecutor(cpus=workers if workers > 1 else None)
    return InProcess() if workers <= 1 else LocalProcesses(workers)
