"""ClearML tracking: each run is a Task, its shards a Dataset version; offline unless a server is set.

Offline sessions (ClearML's own offline mode) end up as zips in ``<out_dir>/clearml/``:
``task-<id>.zip`` for the run and ``dataset-<id>.zip`` for its Dataset version; a server imports
them later (:func:`import_offline_sessions`). ClearML never makes a run fail: any exception in a
ClearML call becomes a logged warning and tracking goes on without that call.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import logging
import os
import shutil
import signal
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.dataset.stats import RunStats
from factory.errors import UserError
from factory.files import refuse_link, subfolder, write_atomic

log = logging.getLogger(__name__)


class TrackingConfig(Strict):
    """ClearML tracking: offline unless a server is configured; `none` turns it off."""

    mode: Literal["auto", "offline", "server", "none"] = "auto"
    project: str = "toonfactory"
    task_name: str | None = None
    dataset: bool = Field(True, description="register the shards as a ClearML Dataset version")

PING_TIMEOUT_S = 3.0
NO_SERVER_HELP = (
    "no ClearML server configured: set CLEARML_API_HOST, CLEARML_API_ACCESS_KEY and "
    "CLEARML_API_SECRET_KEY, or write api.api_server and api.credentials in clearml.conf "
    "(`clearml-init`; CLEARML_CONFIG_FILE names another file)"
)


def _env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def config_file() -> Path | None:
    """The clearml.conf ClearML would read: CLEARML_CONFIG_FILE, else ~/clearml.conf or ~/trains.conf."""
    override = _env("CLEARML_CONFIG_FILE", "TRAINS_CONFIG_FILE")
    candidates = [override] if override else [Path.home() / "clearml.conf", Path.home() / "trains.conf"]
    return next((Path(os.path.expanduser(c)) for c in candidates if Path(os.path.expanduser(c)).is_file()), None)


def server_credentials() -> tuple[str, str, str] | None:
    """(API host, access key, secret key) of a configured ClearML server, from env or clearml.conf, else None."""
    host = _env("CLEARML_API_HOST", "TRAINS_API_HOST")
    key = _env("CLEARML_API_ACCESS_KEY", "TRAINS_API_ACCESS_KEY")
    secret = _env("CLEARML_API_SECRET_KEY", "TRAINS_API_SECRET_KEY")
    conf = config_file()
    if conf is not None and not (host and key and secret):
        try:
            from clearml.utilities.pyhocon import ConfigFactory

            tree = ConfigFactory.parse_file(str(conf))
            host = host or tree.get("api.api_server", None)
            key = key or tree.get("api.credentials.access_key", None)
            secret = secret or tree.get("api.credentials.secret_key", None)
        except Exception as exc:  # a broken clearml.conf means no server, not a failed run
            log.warning("%s: cannot read ClearML configuration (%s); tracking offline", conf, exc)
            return None
    return (str(host), str(key), str(secret)) if host and key and secret else None


def server_problem(host: str, key: str, secret: str, timeout: float = PING_TIMEOUT_S) -> str | None:
    """Why the server cannot take a run now (None when it is healthy and accepts the credentials).

    Checked before ClearML is asked, because ClearML retries a server that answers 5xx for minutes.
    """
    base = host.rstrip("/")
    token = base64.b64encode(f"{key}:{secret}".encode()).decode()
    login = urllib.request.Request(base + "/auth.login", headers={"Authorization": f"Basic {token}"})
    try:
        for request in (base + "/debug.ping", login):
            with urllib.request.urlopen(request, timeout=timeout):
                pass
    except urllib.error.HTTPError as exc:
        return f"{exc.url} answers HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{host} does not answer within {timeout:.0f} s ({exc})"
    return None


@contextlib.contextmanager
def _clearml_prints():
    """ClearML prints its notices; library code logs, so they go to the log instead of stdout."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    for line in buffer.getvalue().splitlines():
        if line.strip():
            log.info("%s", line)


def _guarded(method):
    """Turn any exception of a ClearML call into a warning: tracking must never fail a run."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            log.warning("ClearML %s failed; the run goes on without it: %s: %s",
                        method.__name__, type(exc).__name__, exc)
            log.debug("ClearML %s traceback", method.__name__, exc_info=True)
            return None

    return wrapper


class Tracker:
    """The tracking interface; this base class tracks nothing (``tracking.mode: none``)."""

    mode = "none"
    task_id: str | None = None
    sessions: list[Path]

    def __init__(self):
        self.sessions = []

    def report_scalar(self, title: str, series: str, value: float, iteration: int = 0) -> None:
        """One point of a scalar plot."""

    def report_stats(self, stats: RunStats, iteration: int = 0) -> None:
        """A run's merged stats: counts, reject rates by reason and seconds per stage, as scalars."""
        for title, series, value in stats_scalars(stats):
            self.report_scalar(title, series, value, iteration)

    def report_image(self, title: str, series: str, image: np.ndarray | Path, iteration: int = 0) -> None:
        """A debug image: an RGB uint8 array or an image file."""

    def register_dataset(self, out_dir: Path, name: str, files: list[Path], parents: list[str] | None = None,
                         description: str | None = None) -> str | None:
        """Register ``files`` (paths under ``out_dir``) as a Dataset version, a child of the ``parents``
        Dataset ids when given; returns its id when known."""
        return None

    def close(self) -> None:
        """Finish the task; offline sessions land in ``out_dir/clearml/`` (listed in ``sessions``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def stats_scalars(stats: RunStats) -> list[tuple[str, str, float]]:
    """(title, series, value) for a run's merged stats: counts, reject rate per reason, seconds per stage."""
    attempted = stats.attempted
    rejected = {str(k): int(v) for k, v in stats.rejected.items()}
    rows = [
        ("counts", "attempted", float(attempted)),
        ("counts", "accepted", float(stats.accepted)),
        ("counts", "rejected", float(sum(rejected.values()))),
    ]
    if attempted:
        rows.append(("reject rate", "all", sum(rejected.values()) / attempted))
        rows += [("reject rate", reason, n / attempted) for reason, n in sorted(rejected.items())]
    rows += [("seconds per stage", str(stage), float(s)) for stage, s in sorted(stats.seconds.items())]
    return rows


class ClearMLTracker(Tracker):
    """A ClearML Task (offline or on a server); every method is guarded by :func:`_guarded`."""

    def __init__(self, config: TrackingConfig, task, *, offline: bool, out_dir: Path, recipe_hash: str | None):
        super().__init__()
        self.config = config
        self.task = task
        self.task_id = task.id
        self.mode = "offline" if offline else "server"
        self.out_dir = Path(out_dir)
        self.recipe_hash = recipe_hash
        self.dataset_id: str | None = None
        self._pending_dataset: tuple | None = None
        self._closed = False

    @_guarded
    def connect_recipe(self, recipe: dict) -> None:
        """The recipe as the task's configuration; its hash and the output folder as parameters and a tag."""
        self.task.connect_configuration(recipe, name="recipe", description="the resolved recipe")
        self.task.connect({"recipe_hash": self.recipe_hash or "", "out_dir": str(self.out_dir.resolve())}, name="run")
        if self.recipe_hash:
            self.task.add_tags([f"recipe-{self.recipe_hash}"])

    @_guarded
    def report_scalar(self, title: str, series: str, value: float, iteration: int = 0) -> None:
        self.task.get_logger().report_scalar(title, series, float(value), iteration=int(iteration))

    @_guarded
    def report_image(self, title: str, series: str, image: np.ndarray | Path, iteration: int = 0) -> None:
        logger = self.task.get_logger()
        if isinstance(image, (str, Path)):
            logger.report_image(title, series, iteration=int(iteration), local_path=str(image))
        else:
            logger.report_image(title, series, iteration=int(iteration), image=np.asarray(image, dtype=np.uint8))

    @_guarded
    def register_dataset(self, out_dir: Path, name: str, files: list[Path], parents: list[str] | None = None,
                         description: str | None = None) -> str | None:
        """On a server: create, upload and finalize now. Offline: ClearML allows one open task per
        process, so the Dataset session is written at :meth:`close`, after the run's task; None then.

        ClearML links a child to its parents only on a server (offline it cannot read a parent); an
        offline child, or one whose parent is itself an offline session, names them in ``parent-<id>`` tags.
        """
        if not self.config.dataset:
            return None
        lineage = (list(parents or []), description)
        if self.mode == "offline":
            self._pending_dataset = (Path(out_dir), name, list(files), lineage)
            return None
        self.dataset_id = self._make_dataset(Path(out_dir), name, list(files), lineage)
        self.task.connect({"dataset_id": self.dataset_id}, name="run")
        write_dataset_id(Path(out_dir), self.dataset_id)
        return self.dataset_id

    def _make_dataset(self, out_dir: Path, name: str, files: list[Path], lineage: tuple[list[str], str | None],
                      use_current_task: bool = False) -> str:
        from clearml import Dataset

        parents, description = lineage
        linked = [p for p in parents if self.mode != "offline" and not p.startswith("offline-")]
        tags = ([f"recipe-{self.recipe_hash}"] if self.recipe_hash else []) + [f"parent-{p}" for p in parents]
        dataset = Dataset.create(dataset_name=name, dataset_project=self.config.project, dataset_tags=tags or None,
                                 use_current_task=use_current_task, parent_datasets=linked or None,
                                 description=description or f"shards of run {self.task_id} (recipe hash {self.recipe_hash})")
        root = out_dir.resolve()
        for path in map(Path, files):
            parent = path.resolve().parent
            folder = parent.relative_to(root).as_posix() if parent.is_relative_to(root) and parent != root else None
            dataset.add_files(path=str(path), dataset_path=folder, verbose=False)
        dataset.upload(show_progress=False)
        if self.mode != "offline":
            dataset.finalize()
        log.info("ClearML dataset %s: %d files", dataset.id, len(files))
        return dataset.id

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._close_task(self.task, "task")
            if self._pending_dataset is not None:
                self._close_offline_dataset(*self._pending_dataset)
        finally:
            _restore_reporting()

    @_guarded
    def _close_task(self, task, prefix: str) -> None:
        folder = task.get_offline_mode_folder() if self.mode == "offline" else None
        with _clearml_prints():
            task.close()
        if folder is not None:
            self._keep_session(Path(folder), f"{prefix}-{task.id}.zip")

    @_guarded
    def _close_offline_dataset(self, out_dir: Path, name: str, files: list[Path], lineage) -> None:
        """The Dataset version in its own offline task, opened here and named after the dataset (ClearML
        files a current task under ``<project>/.datasets/<task name>``)."""
        dataset_task = _init_task(self.config.project, name, task_type="data_processing", offline=True)
        try:
            self.dataset_id = self._make_dataset(out_dir, name, files, lineage, use_current_task=True)
        finally:
            self._close_task(dataset_task, "dataset")

    def _keep_session(self, folder: Path, zip_name: str) -> None:
        """Move ClearML's session zip from its cache into out_dir/clearml/ and drop the cached copy."""
        zip_path = folder.with_name(folder.name + ".zip")
        if not zip_path.is_file():
            shutil.make_archive(str(folder), "zip", root_dir=folder)
        target = refuse_link(subfolder(self.out_dir, "clearml") / zip_name)
        shutil.move(str(zip_path), target)
        shutil.rmtree(folder, ignore_errors=True)
        self.sessions.append(target)
        log.info("ClearML offline session kept in %s", target)


_UNSET = object()
_saved_reporting = [_UNSET]  # Task's own `_report_subprocess_enabled` before offline mode changed it


def _quiet_offline() -> None:
    """Offline, ClearML's reporting subprocess only costs time (its close waits ~11 s; a thread's, ~0.05 s),
    and its once-per-process check for a newer clearml on updates.clear.ml has no place in offline mode."""
    from clearml import Task
    from clearml.utilities.check_updates import CheckPackageUpdates

    if _saved_reporting[0] is _UNSET:
        _saved_reporting[0] = Task.__dict__.get("_report_subprocess_enabled", None)
    Task._report_subprocess_enabled = False
    CheckPackageUpdates._package_version_checked = True


def _restore_reporting() -> None:
    """Undo :func:`_quiet_offline` so a later server-mode task reports as ClearML configures it."""
    saved, _saved_reporting[0] = _saved_reporting[0], _UNSET
    if saved is _UNSET:
        return
    from clearml import Task

    if saved is None:
        del Task._report_subprocess_enabled
    else:
        Task._report_subprocess_enabled = saved


DATASET_ID = "dataset.json"


def write_dataset_id(out_dir: Path, dataset_id: str) -> None:
    """Keep the id of a folder's ClearML Dataset version beside it (``clearml/dataset.json``)."""
    write_atomic(subfolder(out_dir, "clearml") / DATASET_ID, json.dumps({"id": dataset_id}).encode())


def dataset_ids(out_dir: Path) -> list[str]:
    """The ClearML Dataset ids of a folder's shards: registered on a server, or kept as offline sessions."""
    folder = Path(out_dir) / "clearml"
    ids = [p.name.removeprefix("dataset-").removesuffix(".zip") for p in sorted(folder.glob("dataset-*.zip"))]
    if (folder / DATASET_ID).is_file():
        ids.insert(0, json.loads((folder / DATASET_ID).read_text())["id"])
    return ids


def require_server(prefix: str) -> None:
    """Raise UserError (message starting with ``prefix``) unless a usable ClearML server is configured."""
    credentials = server_credentials()
    if credentials is None:
        raise UserError(f"{prefix}: {NO_SERVER_HELP}")
    problem = server_problem(*credentials)
    if problem:
        raise UserError(f"{prefix}: ClearML server unusable: {problem}")


def check_remote(config: TrackingConfig, remote_queue: str) -> None:
    """Raise UserError unless the run can be handed to a ClearML agent queue."""
    if config.mode in ("none", "offline"):
        raise UserError(f"--remote {remote_queue}: tracking.mode is {config.mode!r}; handing a run to a "
                        "ClearML agent needs tracking.mode auto or server and a ClearML server")
    require_server(f"--remote {remote_queue}")


def _choose_mode(config: TrackingConfig) -> str:
    """offline or server, from the recipe's mode and whether a reachable server is configured."""
    if config.mode == "offline":
        return "offline"
    credentials = server_credentials()
    if credentials is None:
        if config.mode == "server":
            log.warning("tracking.mode is server but %s; tracking offline", NO_SERVER_HELP)
        return "offline"
    problem = server_problem(*credentials)
    if problem:
        log.warning("ClearML server unusable: %s; tracking offline", problem)
        return "offline"
    return "server"


def start_tracking(config: TrackingConfig, *, name: str, recipe: dict, recipe_hash: str | None,
                   out_dir: Path, task_type: str = "data_processing", remote_queue: str | None = None) -> Tracker:
    """Start a ClearML Task for a run (or a no-op tracker); with ``remote_queue``, hand the run to an agent.

    A remote request that cannot be honoured raises UserError before anything is written; any other
    ClearML failure is a warning and gives the no-op tracker.
    """
    if remote_queue:
        check_remote(config, remote_queue)
    if config.mode == "none":
        return Tracker()
    try:
        mode = _choose_mode(config)
        task = _init_task(config.project, config.task_name or name, task_type=task_type, offline=mode == "offline")
    except Exception as exc:
        _restore_reporting()
        log.warning("ClearML tracking could not start; the run goes on untracked: %s: %s", type(exc).__name__, exc)
        return Tracker()
    tracker = ClearMLTracker(config, task, offline=mode == "offline", out_dir=out_dir, recipe_hash=recipe_hash)
    tracker.connect_recipe(recipe)
    if remote_queue:
        _execute_remotely(task, remote_queue)
    return tracker


def _init_task(project: str, task_name: str, *, task_type: str, offline: bool):
    from clearml import Task

    Task.set_offline(offline)
    if offline:
        _quiet_offline()
    main_thread = threading.current_thread() is threading.main_thread()
    ours = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    with _clearml_prints():
        task = Task.init(
            project_name=project,
            task_name=task_name,
            task_type=task_type,
            reuse_last_task_id=False,
            auto_connect_arg_parser=False,
            auto_connect_frameworks=False,
            auto_connect_streams=False,
            auto_resource_monitoring=False,
        )
    # ClearML hooks SIGINT/SIGTERM to close the task inside the signal handler, which can hang a
    # training run for good; the run stops through its own interrupt path and closes the task then.
    for sig, handler in ours.items():
        if handler is not None:
            signal.signal(sig, handler)
    return task


def _execute_remotely(task, queue: str) -> None:
    """Enqueue the task for an agent and end this process (a no-op when already running on the agent)."""
    try:
        with _clearml_prints():
            task.execute_remotely(queue_name=queue, exit_process=True)
    except Exception as exc:
        raise UserError(f"--remote {queue}: ClearML could not enqueue the run: {exc}") from None


def import_offline_sessions(out_dir: Path) -> list[str]:
    """Import the offline sessions kept in ``out_dir/clearml/`` into the configured server; their new ids.

    Tasks first, then Dataset versions (uploaded and finalized; their files are read from ``out_dir``).
    """
    folder = Path(out_dir) / "clearml"
    zips = sorted(folder.glob("task-*.zip")) + sorted(folder.glob("dataset-*.zip"))
    if not zips:
        raise UserError(f"{folder}: no ClearML offline sessions (task-*.zip, dataset-*.zip) to import")
    require_server(f"{folder}: cannot import")
    from clearml import Dataset, Task

    Task.set_offline(False)
    ids = []
    for path in zips:
        with _clearml_prints():
            if path.name.startswith("dataset-"):
                ids.append(Dataset.import_offline_session(str(path), upload=True, finalize=True))
            else:
                ids.append(Task.import_offline_session(str(path)))
        log.info("imported %s as %s", path, ids[-1])
    return ids
