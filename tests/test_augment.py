"""The augment stage moves both sides of a pair alike: never the toon side's skin or light alone."""

from __future__ import annotations

import numpy as np

from factory.sample import Sample
from factory.stages.augment import AugmentConfig, AugmentStage


def test_skin_and_lighting_changes_are_one_colour_map_on_both_sides():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    stage = AugmentStage(AugmentConfig(skin_tone=1.0, lighting=1.0))
    for seed in range(6):
        sample = stage.process(Sample(key=f"s{seed}", index=0, seed=seed, real=real.copy(), toon=real[:, ::-1].copy()))
        # the toon side is the photo mirrored: one per-pixel colour map on both sides keeps it the mirror image
        # (up to OpenCV's HSV rounding, which depends on a pixel's place in memory: a few grey levels)
        moved = np.abs(sample.real.astype(int) - real).max()
        assert np.abs(sample.toon.astype(int) - sample.real[:, ::-1]).max() <= 3 < 20 <= moved


def test_a_soft_shadow_falls_on_both_sides_alike():
    real = np.full((48, 48, 3), (200, 160, 140), np.uint8)
    stage = AugmentStage(AugmentConfig(skin_tone=0.3, lighting=0.3, shadow=1.0))
    sample = stage.process(Sample(key="s", index=0, seed=3, real=real.copy(), toon=real.copy()))
    assert sample.meta["augment"]["shadow"] is True
    assert np.array_equal(sample.real, sample.toon) and sample.real.min() < real.min()
