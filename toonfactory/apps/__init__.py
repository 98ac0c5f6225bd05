"""Local web pages (gradio Blocks) that compose the factory, the student and casting.

``viewer``: a dataset's pairs, scores, rejects, embedding map and human review. ``demo``: the student
on an uploaded photo, video or webcam frame, and casting. Pages bind to 127.0.0.1 only, and gradio's
usage analytics are off (no call leaves the machine).
"""

from __future__ import annotations

import os

HOST = "127.0.0.1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def launch(blocks, port: int, open_browser: bool = False, block: bool = True):
    """Serve ``blocks`` on 127.0.0.1:``port``; a port already taken is the user's to change."""
    from factory.errors import UserError

    try:
        return blocks.queue().launch(server_name=HOST, server_port=port, inbrowser=open_browser, quiet=True,
                                     prevent_thread_lock=not block, show_error=True)
    except OSError as exc:
        raise UserError(f"--port {port}: cannot serve on {HOST}:{port} ({exc}); choose another port") from None
