"""Local web pages (gradio Blocks) that compose the factory, the student and casting.

``viewer``: a dataset's pairs, scores, rejects, embedding map and human review. ``demo``: the student
on an uploaded photo, video or webcam frame, and casting. Pages bind to 127.0.0.1 only, and gradio's
usage analytics are off (no call leaves the machine).
"""

from __future__ import annotations

import os

HOST = "127.0.0.1"
MAX_UPLOAD = "200mb"  # a photo or a short video; larger uploads are refused by gradio before they are stored
UPLOAD_CLEANUP = (600, 3600)  # every 10 minutes, uploads and outputs older than an hour are deleted
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


class LocalOnly:
    """ASGI guard: only this page's own tab may drive it. A request whose Host is not the bound address
    (a DNS-rebinding page) or whose Origin is another site is refused (403) before gradio sees it."""

    def __init__(self, app, port: int):
        self.app = app
        self.hosts = {f"{HOST}:{port}", f"localhost:{port}"}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope["headers"])
            host = headers.get(b"host", b"").decode("latin-1")
            origin = headers.get(b"origin", b"").decode("latin-1")
            if host not in self.hosts or (origin and origin not in self.origins):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"refused: not this page's own address\n"})
                return
        await self.app(scope, receive, send)


def launch(blocks, port: int, open_browser: bool = False, block: bool = True):
    """Serve ``blocks`` on 127.0.0.1:``port``, never shared (whatever GRADIO_SHARE says), driven only from
    its own address; a port already taken is the user's to change."""
    from starlette.middleware import Middleware

    from factory.errors import UserError

    blocks.delete_cache = UPLOAD_CLEANUP  # gradio's own setting (a Blocks argument), for every page
    try:
        return blocks.queue().launch(server_name=HOST, server_port=port, inbrowser=open_browser, quiet=True,
                                     prevent_thread_lock=not block, show_error=True, share=False,
                                     max_file_size=MAX_UPLOAD,
                                     app_kwargs={"middleware": [Middleware(LocalOnly, port=port)]})
    except OSError as exc:
        raise UserError(f"--port {port}: cannot serve on {HOST}:{port} ({exc}); choose another port") from None
