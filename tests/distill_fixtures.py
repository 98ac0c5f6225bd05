"""A tiny dataset in the factory's output format, written with webdataset.TarWriter, for distill tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from factory.images import encode_png


def toon_of(real: np.ndarray) -> np.ndarray:
    """A simple learnable "teacher": inverted colours, posterized to 4 levels per channel."""
    return ((255 - real) // 64 * 64 + 32).astype(np.uint8)


def real_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random image: a few coloured blobs on a gradient."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([xx, yy, (xx + yy) / 2], axis=-1) * rng.uniform(60, 160, 3)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.1, 0.3)]
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        image += blob[..., None] * rng.uniform(-80, 120, 3)
    return image.clip(0, 255).astype(np.uint8)


def write_dataset(folder: Path, shards: int = 3, per_shard: int = 8, size: int = 64, seed: int = 0, toon=toon_of) -> Path:
    """Write ``shards`` webdataset tars of real/``toon(real)``/json pairs plus a manifest; returns ``folder``."""
    import webdataset as wds

    rng = np.random.default_rng(seed)
    (folder / "shards").mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        with wds.TarWriter(str(folder / "shards" / f"{shard:06d}.tar")) as sink:
            for item in range(per_shard):
                key = f"s{shard:03d}_{item:05d}"
                real = real_image(rng, size)
                sink.write(
                    {
                        "__key__": key,
                        "real.png": encode_png(real),
                        "toon.png": encode_png(toon(real)),
                        "json": json.dumps({"key": key, "teacher": {"kind": "test"}}).encode(),
                    }
                )
    manifest = {"hash": "test", "counts": {"accepted": shards * per_shard}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def write_checkpoint(folder: Path, ngf: int = 8, depth: int = 3, size: int = 64, seed: int = 0,
                     residual: bool = True, upsample: str = "resize") -> Path:
    """A student checkpoint folder (student.safetensors + student.json) with random weights."""
    from distill.train import save_random_student

    return save_random_student(folder, ngf=ngf, depth=depth, size=size, seed=seed, residual=residual, upsample=upsample)
