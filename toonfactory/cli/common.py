"""What every command shares: the console (only the CLI prints), options, quiet native logs, and plain
progress lines where the console is not a terminal."""

from __future__ import annotations

import atexit
import io
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

import typer
from rich.console import Console

from factory.errors import UserError

console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="override a recipe field: a.b=value (repeatable)")
NestedOption = typer.Option(False, "--nested", help="every folder of images under the actors' folder is an actor, named by "
                            "the folder (train/obama and test/obama: one actor); without it a folder of folders is refused")

# Native libraries (mediapipe's C++ graph, TFLite, absl) write straight to file descriptor 2 and
# break the progress bars; chatty Python libraries log. Both stay off the terminal unless -v.
NATIVE_LINE = re.compile(r"^([IWE]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|INFO: Created TensorFlow Lite"
                         r"|WARNING: All log messages before absl::InitializeLog)")
CHATTY_LOGGERS = ("clearml", "urllib3", "diffusers", "transformers", "ray")
VERBOSE_FLAGS = ("-v", "--verbose")


def filter_native_logs(argv: list[str]) -> None:
    """Without -v, pass file descriptor 2 through a thread that drops native log lines (worker
    processes inherit it); Python's own stderr keeps the terminal, so progress bars stay live."""
    if any(flag in argv for flag in VERBOSE_FLAGS) or not _writes_to_fd2(sys.stderr):
        return
    terminal = os.dup(2)
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(terminal), "wb", buffering=0), write_through=True,
                                  encoding=sys.stderr.encoding, errors="backslashreplace")

    def forward() -> None:
        with os.fdopen(read, "rb") as lines:
            for line in lines:
                if not NATIVE_LINE.match(line.decode(errors="replace")):
                    os.write(terminal, line)

    thread = threading.Thread(target=forward, name="native-log-filter", daemon=True)
    thread.start()

    def flush() -> None:  # the last native lines (a crash report) still reach the terminal
        os.dup2(terminal, 2)
        thread.join(timeout=1.0)

    atexit.register(flush)


def _writes_to_fd2(stream) -> bool:
    """Whether Python's stderr is the process's file descriptor 2 (not a capture, as under a test)."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


def check_out_file(out: Path, suffix: str, inputs: list[Path]) -> None:
    """``--out`` must be a file path with ``suffix`` whose folder can be made, and no input (checked before any
    work): a folder or another kind of file (a photo) there is never written over."""
    from factory.files import refuse_link, refuse_out_in_inputs

    if out.suffix.lower() != suffix:
        raise UserError(f"{out}: --out: expected a {suffix} file")
    if out.is_dir():
        raise UserError(f"{out}: --out: is a folder")
    refuse_out_in_inputs(out, inputs)
    refuse_link(out)


def refuse_missing(paths, name: str) -> None:
    """Paths given on the command line that do not exist are refused, naming the option (``--cascade``)
    or argument (``IMAGES``) that gave them, before any work."""
    for path in paths:
        if path is not None and not os.path.lexists(path):
            raise UserError(f"{name} {path}: not found")


def configure_logging(verbose: bool) -> None:
    """Library logs at WARNING (INFO with -v); third-party chatter off unless -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if not verbose:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)


class ProgressLines:
    """Plain progress lines where the console is not a terminal (a log file, a pipe), which a rich bar
    leaves empty: ``LABEL DONE/TOTAL DETAILS RATE UNIT/s ETA ..`` every twentieth of the total or every
    ``SECONDS`` of wall time, whichever comes first, and at the total (``total`` may be set once known)."""

    SECONDS = 20.0

    def __init__(self, label: str, total: int | None = None, unit: str = "items", start: int = 0):
        self.label, self.total, self.unit = label, total, unit
        self.enabled = not console.is_terminal
        self.began = self.shown_at = time.monotonic()
        self.start = self.shown = start  # items done when counting began (a resumed run's steps)
        self.latest: tuple | None = None

    def update(self, done: int, details: str = "", count: int | None = None) -> None:
        """``done`` items so far; ``count`` is what the rate counts when not the items (pairs of shards)."""
        if not self.enabled:
            return
        self.latest = (done, details, done if count is None else count)
        now = time.monotonic()
        if (done == self.total or (self.total and done - self.shown >= max(1, self.total // 20))
                or now - self.shown_at >= self.SECONDS):
            self._show(now)

    def finish(self) -> None:
        """The last count, when no line showed it yet (a total not known in advance)."""
        if self.enabled and self.latest is not None and self.latest[0] != self.shown:
            self._show(time.monotonic())

    def _show(self, now: float) -> None:
        done, details, count = self.latest
        elapsed = max(now - self.began, 1e-9)
        parts = [self.label, f"{done}/{self.total}" if self.total else str(done), details]
        if done > self.start:
            parts.append(f"{(count - self.start) / elapsed:.2f} {self.unit}/s")
            if self.total:
                parts.append(f"ETA {duration(elapsed * (self.total - done) / (done - self.start))}")
        console.print(" ".join(p for p in parts if p), markup=False, highlight=False, soft_wrap=True)
        self.shown, self.shown_at = done, now


def duration(seconds: float) -> str:
    """``2m44s``, ``1h05m``, ``9s``."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"
