"""The factory's pairs (webdataset shards) as training batches.

A dataset whose decoded pairs fit in ``distill.cache_mb`` is decoded once into memory and batches
are drawn from there, augmented in torch (a 200-pair demo would otherwise spend most of its time
decoding PNGs). A larger one is streamed: shards and samples shuffled with fixed seeds, shards
split by node and by worker when there are enough of them (resampled per node/worker when there
are not). Both keep the held-out keys out and give both sides one identical random augmentation.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from pathlib import Path

import numpy as np

from distill.config import DistillConfig
from factory.dataset.reader import shard_files
from factory.errors import UserError
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
        self.crop, self.face_windows = (config.crop, config.face_windows) if augment else (None, 0.0)
        self.generator = None  # the window's random stream, made in the process that decodes
        self.transform = A.Compose(transforms, additional_targets={"target": "image"}, seed=config.seed)
        self.seed = config.seed
        self.reads_faces = config.face_windows > 0  # the json is parsed only when windows look for faces

    def decoded(self, sample: dict) -> dict[str, np.ndarray]:
        """The pair resized (and flipped, shifted when training): ``image``, ``target`` and ``mask``, its face map."""
        from factory.images import BadImage, read_image

        key = sample["__key__"]
        missing = [ext for ext in (self.source_ext, self.target_ext) if ext not in sample]
        if missing:
            raise ValueError(f"{sample.get('__url__', '?')}: sample {key} has no {', '.join(missing)}")
        try:
            source, target = read_image(sample[self.source_ext]), read_image(sample[self.target_ext])
        except BadImage as exc:  # a damaged or hostile shard: named, as inspect and view name it
            raise UserError(f"{sample.get('__url__', '?')}: pair {key} is not a readable image ({exc}); "
                            "regenerate the shard or leave the pair out (`toonfactory view`, `dataset filter`)") from None
        faces = face_map(sample, source.shape[:2]) if self.reads_faces else np.ones(source.shape[:2], np.uint8)
        return self.transform(image=source, target=target, mask=faces)

    def images(self, sample: dict) -> tuple[np.ndarray, np.ndarray]:
        """The pair's (source, target) images, augmented and cropped when training."""
        out = self.decoded(sample)
        if self.crop is None:
            return out["image"], out["target"]
        import torch

        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed + worker_seed_offset())
        pair = torch.from_numpy(np.concatenate([out["image"], out["target"]], axis=2)).permute(2, 0, 1)[None]
        faces = torch.from_numpy(out["mask"] > 0)[None]
        pair = crop_windows(pair, faces, self.crop, self.face_windows, self.generator)[0]
        pair = pair.permute(1, 2, 0).numpy()
        return np.ascontiguousarray(pair[..., :3]), np.ascontiguousarray(pair[..., 3:6])

    def __call__(self, sample: dict):
        source, target = self.images(sample)
        return to_tensor(source), to_tensor(target)


def worker_seed_offset() -> int:
    """A seed offset of this data-loader worker (0 in the main process): each worker draws its own windows."""
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    return 0 if info is None else 7919 * (info.id + 1)


def face_map(sample: dict, shape: tuple[int, int]) -> np.ndarray:
    """A uint8 map (1 inside) of the face boxes in the sample's json (a scene pair lists every face in
    ``faces.faces[].box``, x0 y0 x1 y1 in the pair's pixels); a face pair is its face: all ones."""
    import json

    height, width = shape
    record = sample.get("json")
    faces = []
    if record is not None:
        try:
            faces = (json.loads(record) or {}).get("faces", {}).get("faces", []) or []
        except (ValueError, AttributeError):
            faces = []
    if not faces:
        return np.ones(shape, np.uint8)
    out = np.zeros(shape, np.uint8)
    for face in faces if isinstance(faces, list) else []:
        box = face.get("box") if isinstance(face, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            continue  # a record that is not ours: the pair trains on random windows
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        out[max(0, y0) : max(0, min(height, y1)), max(0, x0) : max(0, min(width, x1))] = 1
    return out if out.any() else np.ones(shape, np.uint8)


def train_loader(config: DistillConfig, data_dir: Path, seed_offset: int = 0):
    """An endless, shuffled, augmented stream of (source, target) batches for this process."""
    from accelerate.state import PartialState

    state = PartialState()
    seed = config.seed + seed_offset + 7919 * state.process_index  # a stream of its own per process
    cached = PairCache.load(config, data_dir)
    batches = cached.batches(seed) if cached is not None else _stream(config, data_dir, seed_offset, state.num_processes)
    if config.colour_jitter > 0 or config.input_grain > 0:
        return jittered(batches, config.colour_jitter, config.input_grain, seed)
    return batches


def jittered(batches, colour: float, grain: float, seed: int):
    """``batches`` with each pair's colours turned and its saturation scaled, both sides alike, and
    grain added to the photo side only (the target stays flat: the student learns to drop texture)."""
    import torch

    generator = torch.Generator().manual_seed(seed + 104729)
    for source, target in batches:
        if colour > 0:
            matrix = colour_matrices(len(source), colour, generator)
            source, target = recolour(source, matrix), recolour(target, matrix)
        if grain > 0:
            source = grained(source, grain, generator)
        yield source, target


def grained(images, strength: float, generator):
    """Images (-1..1, N x 3 x H x W) plus grey film grain: fine (per pixel) and coarse (4 px blotches)
    noise whose standard deviation is drawn per image from 0..``strength``."""
    import torch
    import torch.nn.functional as F

    count, _, height, width = images.shape
    sigma = torch.rand(count, 1, 1, 1, generator=generator) * strength
    fine = torch.randn(count, 1, height, width, generator=generator)
    coarse = torch.randn(count, 1, -(-height // 4), -(-width // 4), generator=generator)
    coarse = F.interpolate(coarse, scale_factor=4, mode="bilinear", align_corners=False)[..., :height, :width]
    return (images + sigma.to(images) * (fine + 2 * coarse).to(images) / 2).clamp(-1, 1)


# RGB <-> YIQ: luma and two chroma axes; a turn of the chroma plane changes hue, a scale saturation.
RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def colour_matrices(count: int, strength: float, generator):
    """One RGB matrix per pair: hue turned by up to ``strength`` x 60 degrees, saturation scaled by
    1 +- ``strength`` / 2. Grey (ink, white paper) stays grey, lightness stays."""
    import math

    import torch

    to_yiq = torch.tensor(RGB_TO_YIQ)
    angle = (torch.rand(count, generator=generator) * 2 - 1) * strength * math.pi / 3
    scale = 1 + (torch.rand(count, generator=generator) * 2 - 1) * strength / 2
    chroma = torch.zeros(count, 3, 3)
    chroma[:, 0, 0] = 1
    chroma[:, 1, 1] = chroma[:, 2, 2] = scale * angle.cos()
    chroma[:, 1, 2] = -scale * angle.sin()
    chroma[:, 2, 1] = scale * angle.sin()
    return torch.linalg.inv(to_yiq) @ chroma @ to_yiq


def recolour(images, matrices):
    """Images (-1..1, N x 3 x H x W) through one colour matrix each, clipped to the range."""
    import torch

    unit = (images + 1) / 2
    return (torch.einsum("nij,njhw->nihw", matrices.to(images), unit) * 2 - 1).clamp(-1, 1)


def _declared_pairs(data_dir: Path) -> int | None:
    from factory.dataset.layout import read_manifest

    try:
        counts = (read_manifest(Path(data_dir)) or {}).get("counts", {})
    except (OSError, ValueError):
        return None
    value = counts.get("accepted")
    return value if isinstance(value, int) else None


class PairCache:
    """Every training pair decoded once at the training size (uint8: both sides and the face map in one tensor)."""

    def __init__(self, pairs, config: DistillConfig):
        self.pairs, self.config = pairs, config

    @classmethod
    def load(cls, config: DistillConfig, data_dir: Path) -> "PairCache | None":
        """The training pairs in memory, or None when they would take more than ``config.cache_mb``."""
        import torch

        per_pair = 2 * 3 * config.size**2
        limit = config.cache_mb * 2**20 // per_pair
        declared = _declared_pairs(data_dir)
        if limit < 1 or (declared is not None and declared > limit):
            return None
        pairs, decoder = [], PairDecoder(config, augment=False)
        for sample in _samples(config, data_dir, held_out=False):
            if len(pairs) >= limit:
                log.info("%s: more than %d pairs (distill.cache_mb %d): streamed from the shards", data_dir, limit, config.cache_mb)
                return None
            out = decoder.decoded(sample)
            faces = out["mask"][..., None] * np.uint8(255)  # -1 / 1 once the pair is scaled like the images
            pairs.append(torch.from_numpy(np.concatenate([out["image"], out["target"], faces], axis=2)).permute(2, 0, 1))
        if not pairs:
            raise UserError(f"{data_dir}: no training pairs (distill.val_fraction {config.val_fraction} holds out every key)")
        log.info("%s: %d training pairs decoded into memory (%.0f MB)", data_dir, len(pairs), len(pairs) * per_pair / 2**20)
        return cls(torch.stack(pairs), config)

    def __len__(self) -> int:
        return len(self.pairs)

    def batches(self, seed: int):
        """Endless batches: each epoch a fresh permutation; flips and scale/shift jitter applied in torch."""
        import torch

        generator = torch.Generator().manual_seed(seed)
        size = self.config.batch_size
        while True:
            order = torch.randperm(len(self.pairs), generator=generator)
            if len(order) < size:
                order = order[torch.randint(len(order), (size,), generator=generator)]
            for start in range(0, len(order) - size + 1, size):
                pair = self.pairs[order[start : start + size]].float().div_(127.5).sub_(1.0)
                pair = augment_pairs(pair, self.config, generator)
                yield pair[:, :3].contiguous(), pair[:, 3:6].contiguous()


def augment_pairs(pair, config: DistillConfig, generator):
    """The streamed path's augmentation on a batch of channel-stacked (source, target) pairs: a
    horizontal flip (p 0.5), with p 0.8 a scale and shift within ``scale_jitter``, reflected at the
    borders, then a random ``crop`` window of each pair."""
    import torch
    import torch.nn.functional as F

    count = pair.shape[0]
    if config.flip:
        flip = torch.rand(count, generator=generator) < 0.5
        pair[flip] = pair[flip].flip(-1)
    jitter = config.scale_jitter
    if jitter > 0:
        apply = (torch.rand(count, generator=generator) < 0.8).float()
        scale = 1.0 + (torch.rand(count, generator=generator) * 2 - 1) * jitter * apply
        shift = (torch.rand(count, 2, generator=generator) * 2 - 1) * jitter * apply[:, None]  # ±jitter/2 of the side
        theta = torch.zeros(count, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / scale
        theta[:, :, 2] = -shift / scale[:, None]
        grid = F.affine_grid(theta, list(pair.shape), align_corners=False)
        pair = F.grid_sample(pair, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if config.crop is not None:
        pair = crop_windows(pair[:, :6], pair[:, 6] > 0, config.crop, config.face_windows, generator)
    return pair


def crop_windows(pair, faces, crop: int, face_share: float, generator):
    """A ``crop`` x ``crop`` window of each of a batch of channel-stacked pairs: with probability
    ``face_share`` centred near a pixel drawn from its ``faces`` map (N x H x W booleans; within a
    quarter window), else anywhere."""
    import torch

    count, _, height, width = pair.shape  # square: the pairs are resized to size x size
    corners = torch.randint(width - crop + 1, (count, 2), generator=generator)
    if face_share > 0:
        faces = faces.reshape(count, -1).float()
        on_face = (torch.rand(count, generator=generator) < face_share) & (faces.sum(1) > 0)
        for i in on_face.nonzero().flatten().tolist():
            pixel = torch.multinomial(faces[i], 1, generator=generator).item()
            offset = (torch.rand(2, generator=generator) - 0.5) * crop / 2
            centre = torch.tensor([pixel // width, pixel % width]) + offset
            corners[i, 0] = int((centre[0] - crop / 2).clamp(0, height - crop))
            corners[i, 1] = int((centre[1] - crop / 2).clamp(0, width - crop))
    return torch.stack([one[:, y : y + crop, x : x + crop] for one, (y, x) in zip(pair, corners.tolist())])


def _stream(config: DistillConfig, data_dir: Path, seed_offset: int, world: int):
    import webdataset as wds

    shards = shard_paths(data_dir)
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
    return _own_errors(wds.WebLoader(
        pipeline,
        batch_size=config.batch_size,
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        drop_last=True,
    ))


def _own_errors(batches):
    """``batches``, with a UserError raised in a data-loader worker process re-raised as its own one line
    (torch hands it over wrapped in the worker's traceback text)."""
    try:
        yield from batches
    except UserError as exc:
        text = str(exc).strip()
        if "Original Traceback" not in text:
            raise
        raise UserError(text.splitlines()[-1].split("UserError: ", 1)[-1]) from None


def _samples(config: DistillConfig, data_dir: Path, held_out: bool):
    """The raw samples of the held-out or the training keys, in shard order."""
    import webdataset as wds

    return wds.DataPipeline(
        wds.SimpleShardList(shard_paths(data_dir)),
        wds.tarfile_to_samples(),
        wds.select(lambda sample: is_validation(sample["__key__"], config.val_fraction) == held_out),
    )


def split_pairs(config: DistillConfig, data_dir: Path, held_out: bool):
    """(key, source, target) images at the training size of the held-out or the training keys, in shard order."""
    decoder = PairDecoder(config, augment=False)
    for sample in _samples(config, data_dir, held_out):
        yield (sample["__key__"], *decoder.images(sample))


def validation_pairs(config: DistillConfig, data_dir: Path, limit: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Up to ``limit`` held-out pairs as (key, source, target) images at the training size, in shard order."""
    if config.val_fraction <= 0:
        return []
    return list(itertools.islice(split_pairs(config, data_dir, held_out=True), limit))
