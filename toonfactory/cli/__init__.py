"""The `toonfactory` command: the composition root. Every command module defines a Typer app;
top-level commands are merged here and command groups mounted by name. Only the CLI prints; a
user's mistake exits 2 with a message naming the file and field."""

from __future__ import annotations

import errno
import signal
import sys

import typer
from rich.markup import escape

from factory.errors import UserError
from toonfactory.cli import adapt, cast, curate, dataset, generate, pages, student, style, warp
from toonfactory.cli.common import configure_logging, console, filter_native_logs

FILE_TROUBLE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)  # EFBIG: a file-size limit (ulimit -f)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mass-produce aligned webtoon <-> real pairs. "
                  "`toonfactory validate --kinds` lists every pluggable kind (teachers, sources, masks, inpainters, "
                  "adapters, detectors, embedders, realifiers).")
app.add_typer(generate.app)
app.add_typer(student.app)
app.add_typer(cast.app, name="cast")
app.add_typer(warp.app, name="warp")
app.add_typer(curate.app, name="curate")
app.add_typer(dataset.app, name="dataset")
app.add_typer(style.app, name="style")
app.add_typer(adapt.app, name="adapt")
app.add_typer(pages.app)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="show library and native log lines")):
    """toonfactory: recipes in, aligned webtoon <-> real pairs out."""
    configure_logging(verbose)


def _terminated(signum, frame):
    """SIGTERM (a scheduler's stop, a spot instance's notice) ends a command as Ctrl-C does: cleanly.
    A second SIGTERM ends the process at once."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def main():
    filter_native_logs(sys.argv[1:])
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        app()  # click handles usage errors itself (exit 2)
    except UserError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)  # a [name] stays in
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # before a command knew what it had made: finished work is on disk as it was
        console.print("interrupted before anything was finished; re-run the same command to start again")
        sys.exit(130)
    except SystemExit as exc:  # typer ends a Ctrl-C it sees in a command with exit 130 and no word
        if exc.code == 130 and isinstance(getattr(exc.__context__, "__cause__", None), KeyboardInterrupt):
            console.print("interrupted: every file written whole before this is kept, none half-written; re-run the "
                          "same command to finish", highlight=False, soft_wrap=True)
        raise
    except OSError as exc:  # a full disk or a read-only folder under any command: one line naming the file
        if exc.errno not in FILE_TROUBLE:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[red]error:[/red] {escape(where + str(exc.strerror or exc))}; every file written whole before this is kept, "
                      "nothing half-written replaced a file; fix this and re-run the same command",
                      highlight=False, soft_wrap=True)
        sys.exit(2)
