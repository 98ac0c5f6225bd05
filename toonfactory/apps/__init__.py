"""Local web pages (gradio Blocks) that compose the factory, the student and casting.

``viewer``: a dataset's pairs, scores, rejects, embedding map and human review. ``demo``: the student
on an uploaded photo, video or webcam frame, and casting. Pages bind to 127.0.0.1 only, and gradio's
usage analytics are off (no call leaves the machine).
"""

import hashlib
import json
import logging
import os
import shutil
import threading
from pathlib import Path

HOST = "127.0.0.1"
MAX_UPLOAD = "200mb"  # a photo or a short video; larger uploads are refused by gradio before they are stored
UPLOAD_CLEANUP = (600, 3600)  # backstop for a server killed mid-session: every 10 minutes, files older than an hour
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
log = logging.getLogger(__name__)


class LocalOnly:
    """ASGI guard: only this page's own tab may drive it. A request whose Host is not the bound address
    (a DNS-rebinding page) or whose Origin is another site is refused (403) before gradio sees it; on a
    page that takes no uploads (``uploads=False``), so is every upload."""

    def __init__(self, app, port: int, uploads: bool = True, sessions: "Sessions | None" = None):
        self.app, self.uploads, self.sessions = app, uploads, sessions
        self.hosts = {f"{HOST}:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin", b"").decode("latin-1")
            upload = scope["type"] == "http" and scope.get("path", "").rstrip("/").endswith("/upload")
            if host not in self.hosts or (origin and origin not in self.origins) or (upload and not self.uploads):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"refused: not this page's own address, or an "
                            b"upload to a page that takes none\n"})
                return
            if upload and self.sessions is not None:
                await self.app(scope, receive, self._counting(send))
                return
        await self.app(scope, receive, send)

    def _counting(self, send):
        """``send`` that tells the sessions which files an upload stored (gradio answers with their paths)."""
        status, body = [0], []

        async def counted(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and status[0] == 200:
                body.append(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        paths = json.loads(b"".join(body))
                    except ValueError:
                        paths = []
                    if isinstance(paths, list):
                        self.sessions.uploaded([p for p in paths if isinstance(p, str)])
            await send(message)
        return counted


class Sessions:
    """What each browser session of a page uploaded and what was made for it, deleted when the session
    ends (its tab closed or reloaded: gradio's ``unload``, fired when the tab's heartbeat stops).

    A session's outputs go to its own folder inside gradio's file cache (``folder``), so gradio serves
    them without a copy and the whole folder goes at the end; an upload an event received is ``claim``ed.
    Uploads reach the server before any event names their session, so when the last live session ends,
    every upload no live session holds (one never run) is deleted too. Gradio keeps identical uploads (same
    bytes, same name) at one path, so a session's end deletes an upload only when no other session holds
    it and it was not stored again since (``uploaded`` counts each time the page stored it: another tab's
    copy that has not been run yet). Only paths inside gradio's upload folder are ever deleted, never
    through a link. ``delete_cache`` stays as the backstop for a server killed mid-session."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from gradio.utils import get_upload_folder

            root = get_upload_folder()
        self.root = Path(root).resolve()
        self.lock = threading.Lock()
        self.live: set[str] = set()
        self.claimed: dict[str, set[Path]] = {}
        self.stored: dict[Path, int] = {}  # times the page stored each upload path (identical uploads share one)
        self.blocks = None

    def attach(self, blocks) -> None:
        """Hook this page's sessions: a tab that opens is live; one that ends has its files deleted."""
        import gradio as gr

        def opened(request: gr.Request):
            self.open(request.session_hash)

        def ended(request: gr.Request):
            self.end(request.session_hash)

        self.blocks = blocks
        blocks.toonfactory_sessions = self  # for launch(): its guard counts what each upload stored
        blocks.load(opened, None, None, show_progress="hidden", queue=False)
        blocks.unload(ended)

    def open(self, session: str | None) -> None:
        if session:
            with self.lock:
                self.live.add(session)
                self.claimed.setdefault(session, set())

    def _inside(self, path: Path) -> Path | None:
        path = Path(os.path.abspath(path))
        try:
            path.relative_to(self.root)
        except ValueError:
            return None
        return path if path != self.root else None

    def claim(self, session: str | None, *paths) -> None:
        """Mark uploads (or files made for the session) as the session's: deleted when it ends."""
        self.open(session)
        with self.lock:
            for path in paths:
                if path and (inside := self._inside(Path(path))) is not None:
                    self.claimed.setdefault(session or "", set()).add(inside)

    def uploaded(self, paths) -> None:
        """The page stored these uploads (once more, for a path an identical upload already has)."""
        with self.lock:
            for path in paths:
                if (inside := self._inside(Path(path))) is not None:
                    self.stored[inside] = self.stored.get(inside, 0) + 1

    def folder(self, session: str | None) -> Path:
        """The session's own output folder (made 0700 inside gradio's cache), deleted when it ends."""
        name = hashlib.sha256((session or "").encode()).hexdigest()[:24]
        path = self.root / "toonfactory-sessions" / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if path.is_symlink() or path.parent.is_symlink():
            raise OSError(f"{path}: a link where a session folder belongs")
        path.mkdir(exist_ok=True, mode=0o700)
        self.claim(session, path)
        return path

    def end(self, session: str | None) -> None:
        with self.lock:
            self.live.discard(session or "")
            doomed = set()
            for path in self.claimed.pop(session or "", set()):
                stored = self.stored.get(path, 0)
                if stored > 1:  # stored again for another tab (identical bytes and name) that may not have run it
                    self.stored[path] = stored - 1
                elif not any(path in paths for paths in self.claimed.values()):  # no other session holds it
                    self.stored.pop(path, None)
                    doomed.add(path)
            if not self.live and self.blocks is not None:  # the last tab: uploads nobody ran go too
                held = set().union(*self.claimed.values()) if self.claimed else set()
                for name in list(getattr(self.blocks, "upload_file_set", ())):
                    inside = self._inside(Path(name))
                    if inside is not None and inside not in held:
                        self.stored.pop(inside, None)
                        doomed.add(inside)
        for path in doomed:
            self._delete(path)
        if doomed:
            log.info("session ended: %d upload(s) and output folder(s) deleted", len(doomed))

    def _delete(self, path: Path) -> None:
        if self.blocks is not None:
            for files in getattr(self.blocks, "temp_file_sets", ()):
                files.discard(str(path))
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            parent = path.parent  # gradio keeps each upload in a folder of its own (named by its hash)
            if parent != self.root and parent.name != "toonfactory-sessions" and not any(parent.iterdir()):
                parent.rmdir()
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)


def launch(blocks, port: int, open_browser: bool = False, block: bool = True, uploads: bool = True):
    """Serve ``blocks`` on 127.0.0.1:``port``, never shared (whatever GRADIO_SHARE says), driven only from
    its own address; ``uploads=False`` refuses every upload (a page with nothing to upload). A port
    already taken is the user's to change."""
    from starlette.middleware import Middleware

    from factory.errors import UserError

    blocks.delete_cache = UPLOAD_CLEANUP  # gradio's own setting (a Blocks argument), for every page
    try:
        return blocks.queue().launch(server_name=HOST, server_port=port, inbrowser=open_browser, quiet=True,
                                     prevent_thread_lock=not block, show_error=True, share=False,
                                     max_file_size=MAX_UPLOAD,
                                     app_kwargs={"middleware": [Middleware(LocalOnly, port=port, uploads=uploads,
                                                                           sessions=getattr(blocks, "toonfactory_sessions", None))]})
    except OSError as exc:
        raise UserError(f"--port {port}: cannot serve on {HOST}:{port} ({exc}); choose another port") from None
