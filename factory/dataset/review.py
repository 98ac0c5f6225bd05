"""Human review: pairs marked bad (with a note) kept in ``DIR/review.json``, never in the shards.

A mark is added or removed under an exclusive lock on the dataset folder (two viewers at once lose
nothing) and the file is replaced atomically (a reader never sees half of it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from factory.dataset.layout import read_json
from factory.dataset.reader import recipe_hash
from factory.errors import UserError
from factory.files import write_atomic

REVIEW = "review.json"
FORMAT = "toonfactory-review/1"
MAX_NOTE = 2000  # characters in one note


def review_path(out: Path) -> Path:
    return Path(out) / REVIEW


def read_review(path: Path) -> dict:
    """The review record (format, recipe hash, marks by key); an empty one when the file is absent."""
    record = read_json(Path(path))
    if record is None:
        return {"format": FORMAT, "recipe_hash": None, "marks": {}}
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"{path}: field 'format' must be {FORMAT!r} (a review file written by `toonfactory view`)")
    marks = record.get("marks")
    if not isinstance(marks, dict) or not all(isinstance(m, dict) and isinstance(m.get("note", ""), str)
                                              for m in marks.values()):
        raise UserError(f"{path}: field 'marks' must map sample keys to {{'note': text}}")
    if any(len(m.get("note", "")) > MAX_NOTE for m in marks.values()):
        raise UserError(f"{path}: field 'marks': a note is longer than {MAX_NOTE} characters")
    record.setdefault("recipe_hash", None)
    return record


@contextlib.contextmanager
def _locked(out: Path):
    handle = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock


def _update(out: Path, change) -> dict:
    out = Path(out)
    with _locked(out):
        record = read_review(review_path(out))
        record["recipe_hash"] = record["recipe_hash"] or recipe_hash(out)
        change(record["marks"])
        write_atomic(review_path(out), json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False).encode())
    return record


def mark(out: Path, key: str, note: str = "") -> dict:
    """Mark the pair ``key`` bad (a second mark replaces the note); returns the review record."""
    if len(note) > MAX_NOTE:
        raise UserError(f"note for {key}: {len(note)} characters, at most {MAX_NOTE}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return _update(out, lambda marks: marks.__setitem__(key, {"note": note.strip(), "marked_at": stamp}))


def unmark(out: Path, key: str) -> dict:
    """Take the mark off ``key`` (nothing happens when it had none)."""
    return _update(out, lambda marks: marks.pop(key, None))
