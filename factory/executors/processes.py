"""``--workers N`` local worker processes, forked from a server that imported the heavy libraries once."""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from pathlib import Path
from typing import Iterator

from factory import plan
from factory.errors import UserError
from factory.executors.base import ExecutorLost, Outcome, stop
from factory.files import DiskFull
from factory.pipeline import build_pipeline
from factory.recipe import Recipe
from factory.shard import run_shard

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
            results.put(("done", run_shard(pipeline, task, Path(out), recipe.seed)))
        except DiskFull as exc:  # the parent stops the run
            results.put(("full", str(exc)))
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
                    raise ExecutorLost("--workers: every worker process exited (killed or crashed: out of memory, "
                                       "a signal, a native crash)") from None

    def _handle(self, message) -> Outcome | None:
        kind, payload = message
        if kind == "ready":
            self.ready += 1
            return None
        if kind == "done":
            return payload
        self.close()
        raise stop(kind, payload)

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[Outcome]:
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
