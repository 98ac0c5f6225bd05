"""Where each file of a dataset folder lives, and the small records kept beside the shards."""

from __future__ import annotations

import json
from pathlib import Path

from factory.dataset.stats import ShardStats
from factory.errors import UserError
from factory.files import sha256_file, write_atomic

MANIFEST = "manifest.json"
RECIPE = "recipe.json"
MAX_RECORD_BYTES = 64 << 20  # a dataset's json records (manifest, recipe, review) are sized before reading


def shard_outputs(out: Path, name: str) -> dict[str, Path]:
    """The files one shard writes in dataset ``out``: its tar, the tar while written, its stats, its marker."""
    return {
        "tar": out / "shards" / f"{name}.tar",
        "tmp": out / "shards" / f"{name}.tar.tmp",
        "stats": out / "stats" / f"{name}.json",
        "marker": out / "stats" / f"{name}.done",
    }


def read_marker(out: Path, name: str) -> dict | None:
    """A shard's completion marker (planned size, samples, tar bytes and sha256), None when absent or damaged."""
    try:
        marker = json.loads(shard_outputs(out, name)["marker"].read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_done(out: Path, task, verify: bool = False) -> bool:
    """True when the shard was completed for the same planned size, its stats are readable and its tar is
    the one the marker recorded: same size always, same sha256 too when ``verify`` (a resume reads every
    tar once)."""
    paths = shard_outputs(out, task.name)
    tar, marker = paths["tar"], read_marker(out, task.name)
    if marker is None or marker.get("size") != task.size or not tar.is_file():
        return False
    if ShardStats.read(paths["stats"]) is None:
        return False
    if tar.stat().st_size != marker.get("bytes") or "sha256" not in marker:
        return False
    return not verify or sha256_file(tar) == marker["sha256"]


def finished_shards(out: Path) -> dict[int, dict]:
    """Markers of the shards on disk, by shard index."""
    found = {}
    for path in (out / "stats").glob("*.done"):
        marker = read_marker(out, path.stem)
        if path.stem.isdigit() and marker is not None:
            found[int(path.stem)] = marker
    return found


def read_json(path: Path) -> dict | None:
    """A JSON record of the folder, None when absent; a damaged one is the user's to see."""
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_RECORD_BYTES:
        raise UserError(f"{path}: {path.stat().st_size} bytes, over the {MAX_RECORD_BYTES >> 20} MB a JSON record may have")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"{path}: not a readable JSON record ({type(exc).__name__}: {exc})") from None


def read_recipe(out: Path) -> dict | None:
    """DIR/recipe.json as `generate` wrote it (``hash``, ``recipe`` of sections), None when absent; a damaged one
    is refused naming the file."""
    record = read_json(out / RECIPE)
    if record is None:
        return None
    if not (isinstance(record, dict) and isinstance(record.get("hash"), str) and isinstance(record.get("recipe"), dict)):
        raise UserError(f"{out / RECIPE}: not a recipe record of `toonfactory generate` (fields 'hash' and 'recipe', "
                        "a mapping of sections)")
    return record


def write_recipe(out: Path, resolved) -> None:
    """The resolved recipe and its hash, kept with the output from the first shard on."""
    record = {"hash": resolved.hash, "origin": resolved.origin, "recipe": resolved.to_dict()}
    write_atomic(out / RECIPE, json.dumps(record, indent=1, sort_keys=True).encode())


MANIFEST_FIELDS = {"name": str, "format": str, "recipe_hash": str, "recipe": dict, "counts": dict, "fields": list, "shards": list}
COUNTS = {"planned": int, "attempted": int, "accepted": int, "rejected": dict}
PARENT = {"path": str, "recipe_hash": str, "removed": list}


def check_manifest(out: Path, manifest) -> None:
    """Refuse, naming the field, a finished dataset's manifest that lacks what its readers (the card, `dataset
    filter`) take: a damaged or hand-made one."""
    where = Path(out) / MANIFEST
    parts = [("", manifest, MANIFEST_FIELDS)]
    if isinstance(manifest, dict):
        parts += [("counts.", manifest.get("counts"), COUNTS)] + (
            [("parent.", manifest["parent"], PARENT)] if "parent" in manifest else [])
    for prefix, record, fields in parts:
        for name, kind in fields.items():
            value = record.get(name) if isinstance(record, dict) else None
            if not isinstance(value, kind) or isinstance(value, bool):
                found = type(value).__name__ if isinstance(record, dict) and name in record else "missing"
                raise UserError(f"{where}: field '{prefix}{name}' is {found}, expected {kind.__name__}; a dataset's "
                                "manifest is written by `toonfactory generate`")


def read_manifest(out: Path) -> dict | None:
    return read_json(out / MANIFEST)


def dataset_files(out: Path) -> list[Path]:
    """The files that make a dataset version: manifest, recipe, stats and shards."""
    return [out / MANIFEST, out / RECIPE, *sorted((out / "stats").glob("*.json")), *sorted((out / "shards").glob("*.tar"))]
