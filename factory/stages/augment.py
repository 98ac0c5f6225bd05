"""Photometric augmentation applied identically to both sides of a pair (albumentations)."""

from __future__ import annotations

from pydantic import Field

from factory.config import Strict
from factory.sample import Sample
from factory.stage import Stage


class AugmentConfig(Strict):
    """Photometric augmentation applied identically to both sides of a pair."""

    enabled: bool = True
    skin_tone: float = Field(0.15, ge=0.0, le=1.0, description="hue/saturation shift strength")
    lighting: float = Field(0.25, ge=0.0, le=1.0, description="brightness/contrast/gamma strength")
    shadow: float = Field(0.0, ge=0.0, le=1.0, description="probability of a soft directional shadow")


class AugmentStage(Stage):
    """Skin tone (hue/saturation), lighting (brightness/contrast/gamma) and optional soft shadows.

    One albumentations pipeline with the toon side as an additional image target, reseeded per
    sample, so both sides get exactly the same parameters.
    """

    name = "augment"

    def __init__(self, config: AugmentConfig):
        import albumentations as A

        self.config = config
        skin, light = config.skin_tone, config.lighting
        self.transform = A.Compose(
            [
                A.HueSaturationValue(hue_shift_limit=int(round(12 * skin)), sat_shift_limit=int(round(40 * skin)),
                                     val_shift_limit=0, p=1.0 if skin > 0 else 0.0),
                A.RandomBrightnessContrast(brightness_limit=0.35 * light, contrast_limit=0.35 * light,
                                           p=1.0 if light > 0 else 0.0),
                A.RandomGamma(gamma_limit=(100 - int(40 * light), 100 + int(40 * light)), p=0.5 if light > 0 else 0.0),
                A.RandomShadow(shadow_roi=(0, 0, 1, 1), num_shadows_limit=(1, 1), p=config.shadow),
            ],
            additional_targets={"toon": "image"},
            save_applied_params=True,
        )

    def process(self, sample: Sample) -> Sample:
        if not self.config.enabled:
            sample.meta["augment"] = self.summary([])
            return sample
        self.transform.set_random_seed(int(sample.rng("augment").integers(2**31)))
        targets = {"image": sample.real}
        if sample.toon is not None:
            targets["toon"] = sample.toon
        out = self.transform(**targets)
        sample.real = out["image"]
        if sample.toon is not None:
            sample.toon = out["toon"]
        sample.meta["augment"] = self.summary(out["applied_transforms"])
        return sample

    @staticmethod
    def summary(applied: list) -> dict:
        """The applied parameters as one fixed record (the same fields for every sample)."""
        params = {name: p for name, p in applied}
        hsv = params.get("HueSaturationValue", {})
        bc = params.get("RandomBrightnessContrast", {})
        record = {
            "hue_shift": hsv.get("hue_shift", 0.0),
            "sat_shift": hsv.get("sat_shift", 0.0),
            "contrast": bc.get("alpha", 1.0),
            "brightness": bc.get("beta", 0.0),
            "gamma": params.get("RandomGamma", {}).get("gamma", 1.0),
        }
        record = {k: round(float(v), 4) for k, v in record.items()}
        record["shadow"] = "RandomShadow" in params
        return record
