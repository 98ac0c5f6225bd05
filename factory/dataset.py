"""The dataset folder: its recipe record, manifest, merged stats, and reading pairs back."""

from __future__ import annotations

import hashlib
import json
import platform
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Iterator


from factory.images import decode_png
from factory.writer import shard_paths, write_atomic

LIBRARIES = ("toonfactory", "torch", "numpy", "opencv-contrib-python", "mediapipe", "albumentations",
             "diffusers", "webdataset", "pillow")


def read_recipe(out: Path) -> dict | None:
    path = out / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_recipe(out: Path, resolved) -> None:
    """The resolved recipe and its hash, kept with the output from the first shard on."""
    record = {"hash": resolved.hash, "origin": resolved.origin, "recipe": resolved.to_dict()}
    write_atomic(out / "recipe.json", json.dumps(record, indent=1, sort_keys=True).encode())


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def shard_stats(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((out / "stats").glob("*.json"))]


def merge_stats(stats: list[dict]) -> dict:
    """Counts, rejects by reason and seconds by stage, summed over shards."""
    merged = {"shards": len(stats), "planned": 0, "attempted": 0, "accepted": 0, "rejected": {}, "seconds": {}}
    for shard in stats:
        for key in ("planned", "attempted", "accepted"):
            merged[key] += shard[key]
        for reason, n in shard["rejected"].items():
            merged["rejected"][reason] = merged["rejected"].get(reason, 0) + n
        for stage, s in shard["seconds"].items():
            merged["seconds"][stage] = round(merged["seconds"].get(stage, 0.0) + s, 4)
    return merged


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(out: Path, resolved, tasks) -> dict:
    """The manifest: recipe, hash, counts, shard checksums and versions. No timings, so it is
    identical for identical data (timings stay in stats/)."""
    stats = {s["shard"]: s for s in shard_stats(out)}
    shards = []
    for task in tasks:
        tar = shard_paths(out, task.name)["tar"]
        shards.append({"name": tar.name, "samples": stats[task.name]["accepted"], "sha256": _sha256(tar)})
    merged = merge_stats([stats[t.name] for t in tasks])
    manifest = {
        "format": "toonfactory-pairs/1",
        "name": resolved.recipe.name,
        "recipe_hash": resolved.hash,
        "recipe": resolved.to_dict(),
        "counts": {k: merged[k] for k in ("planned", "attempted", "accepted", "rejected")},
        "fields": ["real.png", "toon.png", "json"] + (["mask.png"] if _has_masks(out, shards) else []),
        "shards": shards,
        "versions": versions(),
    }
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode())
    return manifest


def _has_masks(out: Path, shards: list[dict]) -> bool:
    for shard in shards:
        with tarfile.open(out / "shards" / shard["name"]) as tar:
            return any(name.endswith(".mask.png") for name in tar.getnames())
    return False


def read_manifest(out: Path) -> dict | None:
    path = out / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


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
