"""Measurements that tell drawn webtoon art from photographs, on an aligned face crop.

Chosen so that a posterised photo (a photo's colours quantised, with DoG edges on top) still reads as
a photo: flatness, colour count and noise are what posterisation fakes, so they are left out. What it
keeps from the photo, and a drawing does not have:

- skin: the photo's own skin colour (drawn skin is paler and less saturated) and its shading, which
  posterisation turns into nested bands (drawn skin is one tone, sometimes one cel shadow):
  ``skin_spread`` (lightness interquartile range), ``skin_lightness``, ``skin_chroma``;
- lines: DoG edges of a photo are fragmented and speckled, a drawing's ink lines are long strokes:
  ``edge_specks`` (tiny dark fragments per 100 line pixels), ``long_strokes`` (share of line pixels
  in strokes at least an eighth of the crop long);
- eyes: drawn eyes have paper-white whites, near-black lashes and a white highlight beside a dark
  iris: ``eye_contrast`` (lightness range in the eye boxes), ``eye_highlight``.

``style_features`` returns these as named floats; ``LogisticModel`` is a small numpy classifier over them.
"""

from __future__ import annotations

import cv2
import numpy as np

FEATURE_NAMES = ("skin_spread", "skin_lightness", "skin_chroma", "edge_specks", "long_strokes", "eye_contrast",
                 "eye_highlight")

# Boxes of the 256 px aligned crop (as the face stage aligns it): cheeks under the eyes and the
# space between the brows, and the two eyes.
SKIN_BOXES = ((slice(140, 175), slice(72, 108)), (slice(140, 175), slice(148, 184)), (slice(88, 110), slice(112, 144)))
EYE_BOXES = ((slice(108, 136), slice(78, 116)), (slice(108, 136), slice(140, 178)))


def box_mask(boxes) -> np.ndarray:
    mask = np.zeros((256, 256), bool)
    for rows, cols in boxes:
        mask[rows, cols] = True
    return mask


SKIN, EYES = box_mask(SKIN_BOXES), box_mask(EYE_BOXES)


def style_features(image: np.ndarray) -> dict[str, float]:
    """Named measurements of an RGB uint8 face crop (best at 256 px, face centred as the face stage crops)."""
    image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA) if image.shape[:2] != (256, 256) else image
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    light = lab[..., 0]
    darker_than_surround = cv2.morphologyEx(light, cv2.MORPH_BLACKHAT, np.ones((7, 7), np.uint8))
    lines = (darker_than_surround > 15).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
    area = stats[1:, cv2.CC_STAT_AREA]
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    line_pixels = max(int(area.sum()), 1)
    skin = SKIN & (darker_than_surround < 8)
    skin_light = light[skin] if skin.sum() > 50 else light[SKIN]
    quartiles = np.percentile(skin_light, [25, 50, 75])
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    eyes = light[EYES]
    near_dark = cv2.dilate((light < 35).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return {
        "skin_spread": float(quartiles[2] - quartiles[0]),
        "skin_lightness": float(quartiles[1]),
        "skin_chroma": float(np.median(chroma[skin] if skin.sum() > 50 else chroma[SKIN])),
        "edge_specks": float((area < 12).sum() / max(line_pixels / 100, 1.0)),
        "long_strokes": float(area[extent >= 32].sum() / line_pixels),
        "eye_contrast": float(np.percentile(eyes, 97) - np.percentile(eyes, 3)),
        "eye_highlight": float(np.mean((light > 88)[EYES] & near_dark[EYES])),
    }


def feature_matrix(images: list[np.ndarray]) -> np.ndarray:
    """(N, len(FEATURE_NAMES)) features of many crops."""
    return np.array([[style_features(image)[name] for name in FEATURE_NAMES] for image in images], np.float64)


class LogisticModel:
    """L2-regularised logistic regression on standardised features (Newton steps; deterministic)."""

    def __init__(self, l2: float = 1.0, steps: int = 25):
        self.l2 = l2
        self.steps = steps

    def fit(self, features: np.ndarray, labels: np.ndarray) -> "LogisticModel":
        self.mean = features.mean(0)
        self.scale = features.std(0) + 1e-9
        x = np.hstack([(features - self.mean) / self.scale, np.ones((len(features), 1))])
        w = np.zeros(x.shape[1])
        penalty = np.eye(x.shape[1]) * self.l2
        penalty[-1, -1] = 0.0
        for _ in range(self.steps):
            p = 1 / (1 + np.exp(-x @ w))
            gradient = x.T @ (p - labels) + penalty @ w
            hessian = (x * (p * (1 - p))[:, None]).T @ x + penalty
            w -= np.linalg.solve(hessian, gradient)
        self.weights = w
        return self

    def feature_weights(self) -> dict[str, float]:
        """Each feature's weight per standard deviation (positive: more of it reads as webtoon)."""
        return dict(zip(FEATURE_NAMES, self.weights[:-1].tolist()))

    def probability(self, features: np.ndarray) -> np.ndarray:
        x = np.hstack([(features - self.mean) / self.scale, np.ones((len(features), 1))])
        return 1 / (1 + np.exp(-x @ self.weights))


def cross_validated_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0) -> float:
    """Stratified k-fold accuracy of ``LogisticModel``."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), int)
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        fold_of[members] = np.arange(len(members)) % folds
    correct = 0
    for fold in range(folds):
        test = fold_of == fold
        model = LogisticModel().fit(features[~test], labels[~test])
        correct += int(((model.probability(features[test]) > 0.5) == labels[test]).sum())
    return correct / len(labels)
