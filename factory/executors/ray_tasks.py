"""``--executor ray``: one Ray task per shard, through the same per-shard template as every executor."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import socket
import time
from pathlib import Path
from typing import Iterator

from factory import plan
from factory.errors import UserError
from factory.executors.base import ExecutorLost, Outcome, stop
from factory.executors.processes import die_with
from factory.files import DiskFull
from factory.pipeline import build_pipeline
from factory.recipe import Recipe
from factory.shard import ShardFailure, run_shard

log = logging.getLogger(__name__)
RAY_PROBE_S = 5.0  # a RAY_ADDRESS whose port does not accept a connection within this is refused at once
RAY_JOIN_S = 120.0  # joining the cluster (or starting a local one) longer than this is refused: Ray itself retries forever
RAY_ROOM_S = 120.0  # so is waiting longer than this, once joined, for a free CPU (Ray queues a task for ever)

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


def _ray_nothing() -> None:
    """A task that only has to start: proof that the cluster has a free slot of the run's shape."""


def _ray_no_room(ray, options: dict, seconds: float, address: str | None) -> str | None:
    """Why no task of ``options`` (a shard's CPU, and GPU when it wants one) started on the cluster within
    ``seconds``: it has no such resource at all (a head started with ``--num-cpus=0`` and no workers) or
    every one is busy with other jobs. None once one started. Ray itself would queue the run's first task
    for ever, with nothing said."""
    probe = ray.remote(**options)(_ray_nothing).remote()
    started, _ = ray.wait([probe], timeout=seconds)
    if started:
        return None
    _cancel(ray, [probe])
    total, free = ray.cluster_resources().get("CPU", 0), ray.available_resources().get("CPU", 0)
    needs = "1 CPU and 1 GPU" if options.get("num_gpus") else "1 CPU"
    if address:
        where = f"the cluster at RAY_ADDRESS={address}"
        remedy = f"add a node with CPUs (`ray start --address={address}`) or unset RAY_ADDRESS (a local cluster)"
    else:
        where, remedy = "the local Ray cluster", "give it CPUs with --workers N"
    return (f"--executor ray: no task could start on {where} within {seconds:g} s: it has {total:g} CPUs, {free:g} "
            f"free (a shard takes {needs}); {remedy}")


def _ray_shard(recipe: Recipe, task: plan.ShardTask, out: str) -> Outcome:
    """One shard as a Ray task, through the template every executor uses (a retry of a task whose first
    try finished reads its stats back; a full disk raises DiskFull, which ``ray_results`` turns into the run's stop)."""
    return run_shard(_ray_pipeline(recipe), task, Path(out), recipe.seed)


RAY_LOST = {  # Ray's exception class: what died, in words
    "LocalRayletDiedError": "Ray's raylet on this machine died (it or one of its agents was killed or crashed)",
    "NodeDiedError": "the Ray node running it died",
    "WorkerCrashedError": "its Ray worker process died on every try (killed, out of memory or a native crash)",
    "OutOfMemoryError": "Ray killed its worker: the machine ran out of memory",
    "OwnerDiedError": "the Ray driver that owned its result died",
    "ObjectLostError": "Ray lost its result (the node that held it died)",
    "RaySystemError": "Ray's own system failed",
}


def ray_lost(exc: BaseException, task: plan.ShardTask | None = None) -> str:
    """One line for a Ray failure that is not the shard's own error: what died, under which shard, and
    the first line Ray gave (its whole text goes to the log)."""
    log.debug("ray failure under shard %s", getattr(task, "name", "?"), exc_info=exc)
    said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    what = next((words for cls in type(exc).__mro__ if (words := RAY_LOST.get(cls.__name__))), "Ray failed")
    shard = f"shard {task.name} stopped: " if task is not None else ""
    return f"--executor ray: {shard}{what} ({said[:300]})"


def wants_gpu(recipe: Recipe) -> bool:
    """Whether a section with a model asks for CUDA (``device: cuda...``, or ``auto`` on a model kind)."""
    sections = [recipe.source, recipe.teacher]
    return any(str(getattr(s, "device", "cpu")).startswith(("cuda", "auto")) for s in sections)


def _ray_driver(cpus: int | None, retries: int, room_s: float, recipe: Recipe, out: str, tasks: mp.Queue,
                results: mp.Queue, parent_pid: int, log_path: str) -> None:
    """The Ray driver, in a process of its own: Ray ends a driver whose raylet or node dies with a bare
    ``exit(1)`` from C++, which no Python code in it can catch, so the run's own process watches this one.
    Messages: ("refused", line), ("ready", None), ("done", outcome), ("full", line), ("lost", line)."""
    import signal

    die_with(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; it ends this process
    with open(log_path, "ab", buffering=0) as file:  # Ray's and the raylet's lines stay off the terminal
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
    try:
        import ray
    except ImportError:
        results.put(("refused", "--executor ray: ray is not installed (pip install 'toonfactory[ray]')"))
        return
    address = os.environ.get("RAY_ADDRESS") or None
    try:
        if not ray.is_initialized():
            ray.init(address=address, num_cpus=None if address else cpus, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError: all one line
        said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        results.put(("refused", f"--executor ray: cannot {_ray_where(address)} ({said[:300]})"))
        return
    results.put(("joined", None))
    try:
        gpus = 1 if wants_gpu(recipe) and ray.cluster_resources().get("GPU", 0) >= 1 else 0
        options = dict(num_cpus=1, num_gpus=gpus)
        ref = ray.put(recipe)
        problem = _ray_no_room(ray, options, room_s, address) or ray.get(ray.remote(**options)(_ray_check).remote(ref))
    except ray.exceptions.RayError as exc:
        results.put(("lost", ray_lost(exc)))
        return
    if problem:
        results.put(("refused", problem))
        return
    results.put(("ready", None))
    # retried when its worker dies; a shard's own error is already a ShardFailure, a full disk is not retried
    shard = ray.remote(max_retries=retries, retry_exceptions=False, **options)(_ray_shard)
    pending = {shard.remote(ref, task, out): task for task in tasks.get()}
    try:
        for outcome in ray_results(ray, pending):
            results.put(("done", outcome))
    except ExecutorLost as exc:
        results.put(("lost", str(exc)))
        return
    except DiskFull as exc:
        results.put(("full", str(exc)))
        return
    ray.shutdown()


def _ray_where(address: str | None) -> str:
    return f"join the cluster at RAY_ADDRESS={address}" if address else "start a local Ray cluster"


def ray_address_problem(address: str, seconds: float = RAY_PROBE_S) -> str | None:
    """Why nothing answers at ``address`` (``host:port`` or ``ray://host:port``): its port refuses or does
    not accept a TCP connection within ``seconds``; None when it does, or for addresses Ray resolves
    itself (``auto``, ``local``)."""
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return None
    except socket.timeout:
        return f"no answer within {seconds:g} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def ray_results(ray, pending: dict) -> Iterator[Outcome]:
    """Each shard's outcome as it finishes. A task that raised outside the template (its pipeline would not
    build) is a ShardFailure; a full disk raises DiskFull, and Ray itself failing (a raylet, agent, node or
    worker that died) raises ExecutorLost with one line, both after cancelling what is left (a remote
    cluster must not go on writing into --out)."""
    while pending:
        task = None
        try:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done)
            outcome = ray.get(done)
        except ray.exceptions.RayTaskError as exc:
            if not isinstance(getattr(exc, "cause", None), DiskFull):
                yield ShardFailure(task.name, str(exc))
                continue
            _cancel(ray, pending)
            raise DiskFull(str(exc.cause)) from None
        except ray.exceptions.RayError as exc:
            _cancel(ray, pending)
            raise ExecutorLost(ray_lost(exc, task)) from None
        yield outcome


def _cancel(ray, pending: dict) -> None:
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - a dead cluster cannot cancel either
            pass


class RayExecutor:
    """One Ray task per shard: ``ray.init()`` joins ``RAY_ADDRESS`` when set, else starts a local
    cluster (``cpus`` of them). A task whose worker dies is retried; a finished shard is skipped; a shard
    whose own code raises is a failed shard, as under every executor (the next run retries it). Workers
    write into ``--out``, so a multi-node cluster needs it on shared storage.

    The Ray driver runs in a child process (``_ray_driver``): when Ray's raylet, one of its agents or
    the node dies, Ray ends its driver with a bare exit code, so this process, which only watches,
    turns any such death into one line (ExecutorLost) and the run stops keeping its finished shards."""

    rank, world = 0, 1

    def __init__(self, cpus: int | None = None, retries: int = 2, join_s: float = RAY_JOIN_S,
                 room_s: float = RAY_ROOM_S):
        self.cpus, self.retries, self.join_s, self.room_s = cpus, retries, join_s, room_s
        self.driver = None
        self.finished = False

    def assigned(self, tasks: list[plan.ShardTask]) -> list[plan.ShardTask]:
        return tasks

    def start(self, recipe: Recipe, out: Path, shards: int) -> None:
        try:
            import ray  # noqa: F401 - said here, before any process starts
        except ImportError:
            raise UserError("--executor ray: ray is not installed (pip install 'toonfactory[ray]')") from None
        import tempfile

        address = os.environ.get("RAY_ADDRESS") or None
        problem = address and ray_address_problem(address)
        if problem:  # Ray would retry it for ever
            raise UserError(f"--executor ray: cannot {_ray_where(address)}: {problem}; start the cluster "
                            "(`ray start --head`) or correct RAY_ADDRESS (unset: a local cluster)")

        handle, self.log_path = tempfile.mkstemp(prefix="toonfactory-ray-driver-", suffix=".log")
        os.close(handle)
        context = mp.get_context("forkserver")
        self.tasks, self.results = context.Queue(), context.Queue()
        self.driver = context.Process(target=_ray_driver, name="toonfactory-ray-driver", daemon=True,
                                      args=(self.cpus, self.retries, self.room_s, recipe, str(out), self.tasks,
                                            self.results, os.getpid(), self.log_path))
        self.driver.start()
        kind, payload = self._next(deadline=time.monotonic() + self.join_s)
        if kind == "joined":
            kind, payload = self._next()
        if kind != "ready":
            self.close()
            raise stop(kind, f"{payload}; what Ray said: {self.log_path}")

    def _next(self, deadline: float | None = None) -> tuple[str, object]:
        while True:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                if deadline is not None and time.monotonic() > deadline and self.driver.is_alive():
                    self.close()
                    address = os.environ.get("RAY_ADDRESS") or None
                    raise UserError(f"--executor ray: cannot {_ray_where(address)}: no answer within "
                                    f"{self.join_s:g} s (what Ray said: {self.log_path})") from None
                if not self.driver.is_alive():
                    try:  # what it said just before it went
                        return self.results.get(timeout=1.0)
                    except queue.Empty:
                        pass
                    code = self.driver.exitcode
                    self.close()
                    if deadline is not None:  # still joining: Ray gave up on the address itself
                        address = os.environ.get("RAY_ADDRESS") or None
                        raise UserError(f"--executor ray: cannot {_ray_where(address)}: Ray's driver gave up "
                                        f"(exit code {code}) (what Ray said: {self.log_path})") from None
                    raise ExecutorLost(f"--executor ray: the Ray driver process exited (code {code}): Ray's raylet "
                                       f"on this machine, one of its agents or the node died (what Ray said: "
                                       f"{self.log_path})") from None

    def run(self, tasks: list[plan.ShardTask]) -> Iterator[Outcome]:
        self.tasks.put(list(tasks))
        remaining = len(tasks)
        while remaining:
            kind, payload = self._next()
            if kind == "done":
                remaining -= 1
                yield payload
            elif kind != "ready":
                self.close()
                raise stop(kind, f"{payload}; what Ray said: {self.log_path}" if kind == "lost" else payload)
        self.finished = True

    def close(self) -> None:
        """The driver of a finished run shuts its cluster down and exits; an interrupted one is ended."""
        if self.driver is None:
            return
        self.driver.join(timeout=30 if self.finished else 0)
        if self.driver.is_alive():
            self.driver.terminate()
            self.driver.join(timeout=10)
        if self.driver.is_alive():  # stuck in Ray's native code past SIGTERM
            self.driver.kill()
            self.driver.join(timeout=10)
        self.driver = None
        if self.finished:  # a run that stopped keeps what Ray said, named in its line
            Path(self.log_path).unlink(missing_ok=True)
