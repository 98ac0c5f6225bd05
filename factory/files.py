"""Files the product writes and checks: the one way to write (fresh temporary file, synced, renamed;
never through a link), paths that must stay inside their folder, content hashes, output-folder locks
and ownership markers, disk full."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from factory.errors import UserError

LOCK_NAME = ".toonfactory.lock"
MARKER_NAME = ".toonfactory.made-by"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger(__name__)


def refuse_link(path: Path) -> Path:
    """``path`` itself, refused (one line naming it) when it is a symbolic link."""
    if os.path.islink(path):
        raise UserError(f"{path}: is a symbolic link; toonfactory never writes through one (remove it or "
                        "choose another folder)")
    return Path(path)


def open_new(path: Path):
    """A binary file created at ``path``, which must not exist yet (O_EXCL; a link there is never followed)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    except FileExistsError:
        refuse_link(path)
        raise
    return os.fdopen(fd, "wb")


@contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A fresh temporary file beside ``path`` (``.NAME.<hex>.tmp.EXT``: unique, created with O_EXCL and
    O_NOFOLLOW) for a writer that needs a file name; once the body returns it is synced and renamed over
    ``path``; on any error it is removed and ``path`` stays as it was. A link at ``path`` is refused.
    The temporary file is flocked while it lives, so :func:`remove_debris` knows a killed writer's."""
    path = Path(path)
    refuse_link(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")
    with open_new(tmp) as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        try:
            yield tmp
            fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            refuse_link(path)
            os.replace(tmp, path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename is None:  # a library's write that did not say where
                exc.filename = str(path)
            raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` the one safe way (see :func:`staged`): readers never see half a file."""
    with staged(path) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def save_tensors(tensors: dict, path: Path) -> None:
    """``safetensors.torch.save_file`` (into a staged file, a checkpoint's staging folder): an I/O failure
    inside it (a full disk) is an OSError naming ``path``, as any other write's, not a SafetensorError."""
    import numpy as np
    from safetensors import SafetensorError

    if any(isinstance(value, np.ndarray) for value in tensors.values()):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file
    try:
        save_file(tensors, str(path))
    except SafetensorError as exc:
        code = re.search(r"os error (\d+)", str(exc))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None


STAGED_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.tmp(\.[^.]*)?")


def _remove_if_dead(path: Path) -> bool:
    """Remove a temporary file of :func:`staged` whose writer is gone (no flock held on it); True if removed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # gone meanwhile, or a link: never followed
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.lstat(path).st_ino:
            return False
        path.unlink()
        return True
    except (BlockingIOError, FileNotFoundError):
        return False  # a live writer's, or renamed into place meanwhile
    finally:
        os.close(fd)


def remove_debris(root: Path, folders: tuple[str, ...] = ()) -> list[Path]:
    """Remove what killed runs left in ``root``, a folder of the command's own: :func:`staged`'s temporary
    files whose writer is gone, at any depth, and the staging folders matching the ``folders`` globs (call
    it holding the folder's lock). Links are neither followed nor removed; returns what was removed."""
    root, removed = Path(root), []
    for dirpath, _, names in os.walk(root):  # os.walk never descends into a link
        removed += [Path(dirpath) / name for name in names
                    if STAGED_NAME.fullmatch(name) and _remove_if_dead(Path(dirpath) / name)]
    for pattern in folders:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                removed.append(path)
    if removed:
        log.info("%s: removed %d file(s) a killed run left: %s", root, len(removed), ", ".join(map(str, removed[:5])))
    return removed


def remove_staged(path: Path) -> list[Path]:
    """Remove the temporary files :func:`staged` made for ``path`` itself (``.NAME.<hex>.tmp.EXT`` beside it)
    whose writer is gone: for an output that lives in a folder its command does not own (a StyleGAN2
    adaptation's file), where :func:`remove_debris` may not sweep. Nothing else there is touched."""
    path = Path(path)
    mine = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{8}}\.tmp{re.escape(path.suffix)}")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    removed = [path.parent / name for name in names if mine.fullmatch(name) and _remove_if_dead(path.parent / name)]
    if removed:
        log.info("%s: removed %d temporary file(s) a killed run left", path, len(removed))
    return removed


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to a log file (created when absent; a link there is refused, never followed). A write
    that fails (a full disk) takes back what part of ``text`` went in and names ``path``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise
    size = None
    try:
        size, view = os.fstat(fd).st_size, memoryview(text.encode())
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:  # a full disk: take back the part that went in, so the log's lines stay whole
        try:
            if size is not None:
                os.ftruncate(fd, size)
        except OSError:
            pass
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        os.close(fd)


def subfolder(root: Path, name: str | Path) -> Path:
    """``root/name`` made as real folders, for a command's own files: a link at ``name`` or at any folder on
    the way to it below ``root`` is refused, never followed."""
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    for part in Path(name).parts:
        folder = refuse_link(folder / part)
        folder.mkdir(exist_ok=True)
    return folder


def inside(root: Path, relative: str | Path, what: str) -> Path:
    """``root/relative`` resolved, refused when it leaves ``root`` (an absolute path, ``..``, a link out):
    ``what`` names the file that gave the path."""
    root = Path(root).resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise UserError(f"{what}: path {str(relative)!r} leaves its folder {root}; refused")
    return target


def refuse_out_in_inputs(out: Path, inputs, option: str = "--out") -> None:
    """Refuse an output that is an input, or inside an input folder: its own files would become inputs
    or replace them."""
    where = Path(out).resolve()
    for item in inputs:
        source = Path(item).resolve()
        if where == source or (Path(item).is_dir() and source in where.parents):
            raise UserError(f"{option} {out}: is {'inside ' if where != source else ''}the input {item}; "
                            "choose a folder outside the inputs")


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
    """What a folder holds besides its lock file and ownership marker (nothing when it does not exist)."""
    if not Path(out).is_dir():
        return []
    return sorted(p for p in Path(out).iterdir() if p.name not in (LOCK_NAME, MARKER_NAME))


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

    With a ``kind`` (``infer``, ``cast gallery``...) the command owns only folders it made: the folder
    must be empty, or hold ``.toonfactory.made-by`` naming that kind, or (made before markers) the file
    ``earlier``; anything else is refused before a byte is written. What a killed run of it left there
    is removed (:func:`remove_debris`, with the staging folders ``debris``).
    """

    def __init__(self, out: Path, command: str, option: str = "--out", kind: str | None = None,
                 earlier: str | None = None, debris: tuple[str, ...] = ()):
        self.out, self.command, self.option = Path(out), command, option
        self.kind, self.earlier, self.debris = kind, earlier, debris
        self.path = self.out / LOCK_NAME
        self.handle = None
        self.created = self.marked = False

    def __enter__(self) -> "FolderLock":
        output_folder(self.out, self.option)
        if not self.out.exists():
            try:
                self.out.mkdir(parents=True)
            except OSError as exc:  # a folder that cannot hold one (/proc), or taken away meanwhile
                raise UserError(f"{self.option} {self.out}: cannot make this folder ({exc.strerror or exc})") from None
            self.created = True
        while True:
            handle = self._open()
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
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command}))
            handle.flush()
        except OSError as exc:  # a full disk: the lock (an flock) is released, the error names its file
            try:
                handle.close()  # closes the file even when its flush fails again
            except OSError:
                pass
            self._undo_mkdir()
            if exc.filename is None:
                exc.filename = str(self.path)
            raise
        self.handle = handle
        if self.kind is not None:
            try:
                self._claim()
                remove_debris(self.out, self.debris)
            except BaseException:
                self.__exit__()
                raise
        return self

    def _open(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refuse_link(self.path)
            raise
        return os.fdopen(fd, "r+")

    def _claim(self) -> None:
        """Refuse a folder this kind of command did not make; mark an empty one as made by it."""
        marker = refuse_link(self.out / MARKER_NAME)
        made_by = None
        if marker.is_file():
            with open(marker, "rb") as handle:
                made_by = handle.read(200).decode(errors="replace").strip()
        if made_by is not None and made_by != self.kind:
            raise UserError(f"{self.option} {self.out}: made by `toonfactory {made_by}`, not `toonfactory "
                            f"{self.kind}`; choose another folder")
        entries = [p.name for p in folder_entries(self.out)]
        if made_by is None and entries and not (self.earlier and (self.out / self.earlier).is_file()):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise UserError(f"{self.option} {self.out}: not empty ({shown}) and not made by `toonfactory "
                            f"{self.kind}`; toonfactory never replaces files it did not make: choose a new or "
                            "empty folder")
        if made_by is None:
            write_atomic(marker, self.kind.encode())
            self.marked = True

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
        if folder_entries(self.out):
            return
        if self.marked:
            (self.out / MARKER_NAME).unlink(missing_ok=True)
        if self.created:
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
