"""What every command shares: the console (only the CLI prints), options, and quiet native logs."""

from __future__ import annotations

import atexit
import io
import logging
import os
import re
import sys
import threading

import typer
from rich.console import Console

console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="override a recipe field: a.b=value (repeatable)")

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


def configure_logging(verbose: bool) -> None:
    """Library logs at WARNING (INFO with -v); third-party chatter off unless -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if not verbose:
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)

