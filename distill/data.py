"""Streaming the factory's pairs (webdataset shards) into training batches.

The training stream shuffles shards and samples with fixed seeds, splits shards by node and by
worker when there are enough of them (and resamples shards per node/worker when there are not),
keeps the keys of the held-out split out, and applies one random augmentation to both sides.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from distill.config import DistillConfig
from factory.dataset.reader import shard_files
from factory.images import from_unit, to_unit

log = logging.getLogger(__name__)


def shard_paths(data_dir: Path) -> list[str]:
    """The dataset's shard files as strings (what webdataset takes)."""
    return [str(p) for p in shard_files(data_dir)]


def is_validation(key: str, fraction: float) -> bool:
    """Whether a key belongs to the held-out split: a stable hash of the key, not its position."""
    bucket = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "little") / 2**32
    return bucket < fraction


def to_tensor(image: np.ndarray):
    """RGB uint8 H×W×3 to a float CHW tensor in [-1, 1]."""
    import torch

    return torch.from_numpy(to_unit(image))


def to_image(tensor) -> np.ndarray:
    """Float CHW (or NCHW, first item) in [-1, 1] to RGB uint8 H×W×3."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    return from_unit(tensor.detach().float().cpu().numpy())


class PairDecoder:
    """Turns a raw webdataset sample into (source, target) images in the training direction."""

    def __init__(self, config: DistillConfig, augment: bool):
        import albumentations as A
        import cv2

        self.source_ext, self.target_ext = (
            ("real.png", "toon.png") if config.direction == "real2toon" else ("toon.png", "real.png")
        )
        transforms = [A.Resize(config.size, config.size, interpolation=cv2.INTER_AREA)]
        if augment and config.flip:
            transforms.append(A.HorizontalFlip(p=0.5))
        if augment and config.scale_jitter > 0:
            jitter = config.scale_jitter
            transforms.append(
                A.Affine(
                    scale=(1 - jitter, 1 + jitter),
                    translate_percent=(-jitter / 2, jitter / 2),
                    border_mode=cv2.BORDER_REFLECT_101,
                    p=0.8,
                )
            )
        self.transform = A.Compose(transforms, additional_targets={"target": "image"}, seed=config.seed)

    def images(self, sample: dict) -> tuple[np.ndarray, np.ndarray]:
        from factory.images import read_image

        key = sample["__key__"]
        missing = [ext for ext in (self.source_ext, self.target_ext) if ext not in sample]
        if missing:
            raise ValueError(f"{sample.get('__url__', '?')}: sample {key} has no {', '.join(missing)}")
        source, target = read_image(sample[self.source_ext]), read_image(sample[self.target_ext])
        out = self.transform(image=source, target=target)
        return out["image"], out["target"]

    def __call__(self, sample: dict):
        source, target = self.images(sample)
        return to_tensor(source), to_tensor(target)


def train_loader(config: DistillConfig, data_dir: Path, seed_offset: int = 0):
    """An endless, shuffled, augmented stream of (source, target) batches for this process."""
    import webdataset as wds

    from accelerate.state import PartialState

    shards = shard_paths(data_dir)
    world = PartialState().num_processes
    seed = config.seed + seed_offset
    if len(shards) >= world * max(1, config.workers):
        shard_stages = [
            wds.SimpleShardList(shards),
            wds.detshuffle(bufsize=len(shards), seed=seed),
            wds.split_by_node,
            wds.split_by_worker,
        ]
        repeat = True
    else:
        log.info("%d shards for %d processes x %d workers: resampling shards per worker", len(shards), world, config.workers)
        shard_stages = [wds.ResampledShards(shards, seed=seed, deterministic=True)]
        repeat = False
    fraction = config.val_fraction
    pipeline = wds.DataPipeline(
        *shard_stages,
        wds.tarfile_to_samples(),
        wds.select(lambda sample: not is_validation(sample["__key__"], fraction)),
        wds.shuffle(config.shuffle_buffer, initial=min(config.shuffle_buffer, 64), seed=seed),
        wds.map(PairDecoder(config, augment=True)),
    )
    if repeat:
        pipeline = pipeline.repeat(nepochs=10**9)
    return wds.WebLoader(
        pipeline,
        batch_size=config.batch_size,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        drop_last=True,
    )


def validation_pairs(config: DistillConfig, data_dir: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``limit`` held-out pairs as (key, source, target) images at the training size, in shard order."""
    import webdataset as wds

    if config.val_fraction <= 0:
        return []
    decoder = PairDecoder(config, augment=False)
    pipeline = wds.DataPipeline(
        wds.SimpleShardList(shard_paths(data_dir)),
        wds.tarfile_to_samples(),
        wds.select(lambda sample: is_validation(sample["__key__"], config.val_fraction)),
    )
    pairs = []
    for sample in pipeline:
        pairs.append((sample["__key__"], *decoder.images(sample)))
        if len(pairs) >= limit:
            break
    return pairs
