"""What every command shares: the console (only the CLI prints), options, and quiet native logs."""

from __future__ import annotations

import logging
import os

import typer
from rich.console import Console

console = Console(stderr=True)

SetOption = typer.Option(None, "--set", help="override a recipe field: a.b=value (repeatable)")

# Native libraries (mediapipe's C++ graph, TFLite, absl) and chatty Python ones write straight to
# the terminal and break the progress bars; they are quiet unless -v is given.
NATIVE_QUIET = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
CHATTY_LOGGERS = ("clearml", "urllib3", "diffusers", "transformers", "ray")


def configure_logging(verbose: bool) -> None:
    """Library logs at WARNING (INFO with -v); native and third-party chatter off unless -v."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)
    if verbose:
        return
    for name, value in NATIVE_QUIET.items():
        os.environ.setdefault(name, value)  # read when mediapipe loads, here and in worker processes
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)

