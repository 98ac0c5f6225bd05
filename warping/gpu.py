"""Batched warps on a GPU (or CPU) with ``torch.nn.functional.grid_sample``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from warping.warp import Warp


def warp_grids(warps: Sequence[Warp], device=None):
    """(N, H, W, 2) sampling grids of equally sized warps, as one float32 tensor on ``device``."""
    import torch

    shapes = {w.shape for w in warps}
    if len(shapes) != 1:
        raise ValueError(f"a batch needs warps of one image size, got {sorted(shapes)}")
    return torch.from_numpy(np.stack([w.grid() for w in warps]).astype(np.float32)).to(device)


def remap_batch(images, grids, mode: str = "bilinear"):
    """Warp a float NCHW batch with (N, H, W, 2) grids from :func:`warp_grids` (border pixels replicate)."""
    import torch.nn.functional as F

    return F.grid_sample(images, grids.to(images.dtype), mode=mode, padding_mode="border", align_corners=True)
