"""HTML review sheets: one per character, cluster or actor, kept faces first, then dropped ones."""

from __future__ import annotations

import html
import os

from curate.store import Workspace
from factory.files import write_atomic

STYLE = ("body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;width:140px;"
         "vertical-align:top;font-size:11px}img{width:128px;height:128px;object-fit:cover}"
         ".keep{border:3px solid #2a2}.drop{border:3px solid #c33}code{font-size:10px}")


def write_sheet(ws: Workspace, group: str) -> str:
    """Write ``review/<group>.html`` and return its path relative to the workspace."""
    info = ws.manifest["groups"][group]
    items = sorted(info["decisions"].items(), key=lambda kv: (not kv[1]["keep"], -(kv[1].get("score") or 0)))
    path = ws.root / "review" / f"{group}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    up = os.path.relpath(ws.root, path.parent)
    kept = sum(d["keep"] for _, d in items)
    cells = []
    for face_id, decision in items:
        face = ws.manifest["faces"].get(face_id, {})
        where = f"{face.get('file', '')} slice {face.get('slice', '-')} box {face.get('box', '')} ({face.get('detector', '')})"
        score = decision.get("score")
        cells.append(
            f'<figure><img class="{"keep" if decision["keep"] else "drop"}" src="{up}/{face.get("crop", "")}" '
            f'title="{html.escape(where)}"><figcaption><b>{"kept" if decision["keep"] else "dropped"}</b> '
            f'{html.escape(decision["reason"])}{"" if score is None else f" {score:.3f}"}'
            f'{" (override)" if decision.get("by") == "override" else ""}<br><code>{face_id}</code></figcaption></figure>')
    body = (f"<h1>{html.escape(group)}</h1><p>{kept} kept, {len(items) - kept} dropped. To change a decision, add "
            f'<code>"{html.escape(group)}": {{"&lt;id&gt;": "keep" | "drop"}}</code> to overrides.json and run again.</p>')
    write_atomic(path, f"<!doctype html><meta charset=utf-8><style>{STYLE}</style>{body}{''.join(cells)}".encode())
    return path.relative_to(ws.root).as_posix()
