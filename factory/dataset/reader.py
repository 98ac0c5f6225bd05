"""Reading a dataset folder back: its shard files and manifest, and its pairs as images."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

from factory.dataset.layout import read_manifest
from factory.errors import UserError
from factory.images import decode_png


def shard_files(data_dir: Path, option: str = "--data") -> list[Path]:
    """The dataset's finished shard files, sorted; a folder without any is the user's mistake."""
    shards = sorted((Path(data_dir) / "shards").glob("*.tar"))
    if not shards:
        raise UserError(f"{Path(data_dir) / 'shards'}: no *.tar shards; {option} must be a dataset folder made by "
                        "`toonfactory generate`")
    return shards


def recipe_hash(data_dir: Path) -> str | None:
    """The hash of the recipe that made the dataset (None while its run is unfinished)."""
    manifest = read_manifest(Path(data_dir))
    return None if manifest is None else manifest.get("recipe_hash")


def iter_pairs(out: Path, limit: int | None = None) -> Iterator[dict]:
    """Samples of a dataset folder as dicts: key, real, toon, (mask), meta."""
    n = 0
    for tar_path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            current: dict = {}
            for member in tar:
                key, ext = member.name.split(".", 1)
                if current and current["key"] != key:
                    yield current
                    n += 1
                    if limit is not None and n >= limit:
                        return
                    current = {}
                current["key"] = key
                data = tar.extractfile(member).read()
                current[ext.split(".")[0] if ext != "json" else "meta"] = (
                    json.loads(data) if ext == "json" else decode_png(data))
            if current:
                yield current
                n += 1
                if limit is not None and n >= limit:
                    return
