"""Files the product writes and checks: atomic writes, content hashes, output-folder locks, disk full."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
from pathlib import Path

from factory.errors import UserError

LOCK_NAME = ".toonfactory.lock"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary name, flush to disk, rename: readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path, length: int | None = None) -> str:
    """The sha256 of a file's bytes (hex, cut to ``length`` characters when given)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]


class DiskFull(UserError):
    """The disk (or quota) filled up: what was finished is kept, the rest is redone by a re-run."""


def disk_full(exc: BaseException, kept: str) -> DiskFull | None:
    """A one-line DiskFull for an OSError that means 'no space left', else None."""
    if isinstance(exc, OSError) and exc.errno in DISK_FULL:
        where = f" writing {exc.filename}" if exc.filename else ""
        return DiskFull(f"disk full{where} ({os.strerror(exc.errno)}); {kept}")
    return None


def output_folder(out: Path, option: str = "--out") -> Path:
    """``out`` as a folder to write into: refused when it is a file or cannot be created."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: exists and is not a folder")
    parent = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise UserError(f"{option} {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{option} {out}: {parent} is not writable")
    return out


def folder_entries(out: Path) -> list[Path]:
    """What a folder holds besides its lock file (nothing when it does not exist)."""
    if not Path(out).is_dir():
        return []
    return sorted(p for p in Path(out).iterdir() if p.name != LOCK_NAME)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """An exclusive lock on an output folder: ``OUT/.toonfactory.lock`` holding the pid, host and command.

    The lock is an ``flock`` on that file, so it dies with its holder; a lock file left by a dead
    process is taken over. A live holder is refused with a UserError naming it. Creating the
    folder for the lock is undone on release when nothing else was written into it.
    """

    def __init__(self, out: Path, command: str, option: str = "--out"):
        self.out, self.command, self.option = Path(out), command, option
        self.path = self.out / LOCK_NAME
        self.handle = None
        self.created = False

    def __enter__(self) -> "FolderLock":
        output_folder(self.out, self.option)
        if not self.out.exists():
            self.out.mkdir(parents=True)
            self.created = True
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._holder(handle)
                handle.close()
                self._undo_mkdir()
                raise UserError(f"{self.option} {self.out}: in use by {holder}; wait for it to finish or "
                                "choose another folder") from None
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a file its previous holder unlinked while we waited
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}))
        handle.flush()
        self.handle = handle
        return self

    @staticmethod
    def _holder(handle) -> str:
        handle.seek(0)
        try:
            record = json.loads(handle.read() or "{}")
        except ValueError:
            record = {}
        pid, host = record.get("pid"), record.get("host", "?")
        alive = "" if host != socket.gethostname() or not isinstance(pid, int) or _pid_alive(pid) else " (exiting)"
        return f"`{record.get('command', 'toonfactory')}` (pid {pid} on {host}{alive})"

    def _undo_mkdir(self) -> None:
        if self.created and not folder_entries(self.out):
            self.path.unlink(missing_ok=True)
            try:
                self.out.rmdir()
            except OSError:
                pass

    def __exit__(self, *exc) -> None:
        if self.handle is None:
            return
        self.path.unlink(missing_ok=True)
        self.handle.close()
        self.handle = None
        self._undo_mkdir()
