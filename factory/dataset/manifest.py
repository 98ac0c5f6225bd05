"""Sealing a finished run: the manifest (recipe, hash, counts, shard checksums, library versions)."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

from factory.dataset.card import write_card
from factory.dataset.layout import MANIFEST, shard_outputs
from factory.dataset.reader import shard_members
from factory.dataset.report import shard_stats
from factory.dataset.stats import RunStats
from factory.files import sha256_file, write_atomic

FORMAT = "toonfactory-pairs/1"
LIBRARIES = ("toonfactory", "torch", "numpy", "opencv-contrib-python", "mediapipe", "albumentations",
             "diffusers", "webdataset", "pillow")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def write_manifest(out: Path, resolved, tasks) -> dict:
    """The manifest of a finished run (and its dataset card)."""
    return seal(out, name=resolved.recipe.name, recipe_hash=resolved.hash, recipe=resolved.to_dict(),
                shard_names=[task.name for task in tasks])


def seal(out: Path, *, name: str, recipe_hash: str, recipe: dict, shard_names: list[str],
         parent: dict | None = None) -> dict:
    """Write the manifest (recipe, hash, counts, shard checksums, versions; the ``parent`` of a derived
    version), then the dataset card. No timings, so both are identical for identical data (timings stay in stats/)."""
    stats = {s.shard: s for s in shard_stats(out)}
    shards = []
    for shard in shard_names:
        tar = shard_outputs(out, shard)["tar"]
        shards.append({"name": tar.name, "samples": stats[shard].accepted, "sha256": sha256_file(tar)})
    merged = RunStats.merge(stats[shard] for shard in shard_names)
    manifest = {
        "format": FORMAT,
        "name": name,
        "recipe_hash": recipe_hash,
        "recipe": recipe,
        "counts": merged.counts(),
        "fields": ["real.png", "toon.png", "json"] + (["mask.png"] if _has_masks(out, shards) else []),
        "shards": shards,
        "versions": versions(),
    }
    if parent is not None:
        manifest["parent"] = parent
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    write_card(out, manifest)
    return manifest


def _has_masks(out: Path, shards: list[dict]) -> bool:
    for shard in shards:
        return any(ext == "mask.png" for _, _, _, ext in shard_members(out / "shards" / shard["name"]))
    return False
