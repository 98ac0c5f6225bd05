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


def check_shards(data_dir: Path, option: str = "--data") -> list[Path]:
    """The dataset's shards, each checked to be a tar whose members are plain files named ``KEY.EXT``
    (no folders, no ``..``, no absolute or linked names): a damaged or hostile shard is refused by name."""
    shards = shard_files(data_dir, option)
    for path in shards:
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    name = member.name
                    if not member.isfile() or "/" in name or "\\" in name or name.startswith(".") or "." not in name:
                        raise UserError(f"{path}: {option}: member {name!r} is not a sample file (KEY.EXT); "
                                        "the shard was not made by `toonfactory generate`")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{path}: {option}: not a readable tar shard ({exc})") from None
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
