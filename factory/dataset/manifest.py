"""Sealing a finished run: the manifest (recipe, hash, counts, shard checksums, library versions)."""

from __future__ import annotations

import json
import platform
import tarfile
from importlib import metadata
from pathlib import Path

from factory.dataset.layout import MANIFEST, shard_paths
from factory.dataset.report import merge_stats, shard_stats
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
    """The manifest: recipe, hash, counts, shard checksums and versions. No timings, so it is
    identical for identical data (timings stay in stats/)."""
    stats = {s["shard"]: s for s in shard_stats(out)}
    shards = []
    for task in tasks:
        tar = shard_paths(out, task.name)["tar"]
        shards.append({"name": tar.name, "samples": stats[task.name]["accepted"], "sha256": sha256_file(tar)})
    merged = merge_stats([stats[t.name] for t in tasks])
    manifest = {
        "format": FORMAT,
        "name": resolved.recipe.name,
        "recipe_hash": resolved.hash,
        "recipe": resolved.to_dict(),
        "counts": {k: merged[k] for k in ("planned", "attempted", "accepted", "rejected")},
        "fields": ["real.png", "toon.png", "json"] + (["mask.png"] if _has_masks(out, shards) else []),
        "shards": shards,
        "versions": versions(),
    }
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def _has_masks(out: Path, shards: list[dict]) -> bool:
    for shard in shards:
        with tarfile.open(out / "shards" / shard["name"]) as tar:
            return any(name.endswith(".mask.png") for name in tar.getnames())
    return False
