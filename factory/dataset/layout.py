"""Where each file of a dataset folder lives, and the small records kept beside the shards."""

from __future__ import annotations

import json
from pathlib import Path

from factory.errors import UserError
from factory.files import write_atomic

MANIFEST = "manifest.json"
RECIPE = "recipe.json"


def shard_paths(out: Path, name: str) -> dict[str, Path]:
    return {
        "tar": out / "shards" / f"{name}.tar",
        "tmp": out / "shards" / f"{name}.tar.tmp",
        "stats": out / "stats" / f"{name}.json",
        "marker": out / "stats" / f"{name}.done",
    }


def is_done(out: Path, task) -> bool:
    """True when the shard was completed for the same planned size."""
    paths = shard_paths(out, task.name)
    if not (paths["marker"].is_file() and paths["tar"].is_file()):
        return False
    try:
        return json.loads(paths["marker"].read_text()).get("size") == task.size
    except (OSError, ValueError):
        return False


def read_json(path: Path) -> dict | None:
    """A JSON record of the folder, None when absent; a damaged one is the user's to see."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON record ({exc})") from None


def read_recipe(out: Path) -> dict | None:
    return read_json(out / RECIPE)


def write_recipe(out: Path, resolved) -> None:
    """The resolved recipe and its hash, kept with the output from the first shard on."""
    record = {"hash": resolved.hash, "origin": resolved.origin, "recipe": resolved.to_dict()}
    write_atomic(out / RECIPE, json.dumps(record, indent=1, sort_keys=True).encode())


def read_manifest(out: Path) -> dict | None:
    return read_json(out / MANIFEST)


def dataset_files(out: Path) -> list[Path]:
    """The files that make a dataset version: manifest, recipe, stats and shards."""
    return [out / MANIFEST, out / RECIPE, *sorted((out / "stats").glob("*.json")), *sorted((out / "shards").glob("*.tar"))]
