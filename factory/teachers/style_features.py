"""Measurements that tell drawn webtoon art from photographs, on an aligned face crop.

Drawn art has large flat regions, no skin texture, crisp edges and dark lines, few colours and
pale, clean skin with at most a few cel-shadow steps; photos have texture and noise everywhere, and
a posterised photo keeps their banded shading and wrinkle lines inside the skin. ``style_features`` returns these as
named floats (a classifier's input, a gate's score); ``LogisticModel`` is a small numpy classifier
over them.
"""

from __future__ import annotations

import cv2
import numpy as np

FEATURE_NAMES = ("flat_share", "skin_texture", "skin_steps", "skin_lines", "edge_crispness", "line_density",
                 "colour_count", "saturation", "saturation_spread", "noise", "centre_lightness")


def style_features(image: np.ndarray) -> dict[str, float]:
    """Named measurements of an RGB uint8 face crop (best at 256 px, face centred as the face stage crops)."""
    image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA) if image.shape[:2] != (256, 256) else image
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    light = lab[..., 0]
    gx, gy = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3) / 8
    gradient = np.hypot(gx, gy)
    detail = light - cv2.GaussianBlur(light, (0, 0), 1.5)
    cheeks = np.zeros(light.shape, bool)  # where the aligned crop has skin: under the eyes, between the brows
    cheeks[140:175, 72:108] = cheeks[140:175, 148:184] = cheeks[88:110, 112:144] = True
    quiet = cheeks & (np.abs(detail) < 6)  # texture, not drawn lines
    skin_texture = float(np.mean(np.abs(detail[quiet]))) if quiet.any() else 0.0
    fine_lines = (cv2.GaussianBlur(light, (0, 0), 1.0) - cv2.GaussianBlur(light, (0, 0), 2.0)) < -1.5
    edges = gradient > 6
    blurred = np.hypot(*np.gradient(cv2.GaussianBlur(light, (0, 0), 1.5)))
    crispness = float(gradient[edges].mean() / max(blurred[edges].mean(), 1e-3)) if edges.any() else 1.0
    blackhat = cv2.morphologyEx(light, cv2.MORPH_BLACKHAT, np.ones((7, 7), np.uint8))
    codes = (image[..., 0] >> 3).astype(np.int32) << 10 | (image[..., 1] >> 3).astype(np.int32) << 5 | image[..., 2] >> 3
    counts = np.sort(np.bincount(codes.ravel(), minlength=1 << 15))[::-1]
    needed = int(np.searchsorted(np.cumsum(counts), 0.9 * codes.size)) + 1
    chroma = np.hypot(lab[..., 1], lab[..., 2])
    centre = light[96:176, 80:176]
    return {
        "flat_share": float(np.mean(gradient < 1.0)),
        "skin_texture": skin_texture,
        "skin_steps": float(np.mean((gradient[cheeks] > 1.0) & (gradient[cheeks] < 6.0))),  # banding, soft shading
        "skin_lines": float(np.mean(fine_lines[cheeks])),  # wrinkles, folds, stubble kept from a photo
        "edge_crispness": crispness,
        "line_density": float(np.mean(blackhat > 15)),
        "colour_count": float(np.log(needed)),
        "saturation": float(np.mean(chroma)),
        "saturation_spread": float(np.std(chroma)),
        "noise": float(np.median(np.abs(cv2.Laplacian(light, cv2.CV_32F)))),
        "centre_lightness": float(np.median(centre)),
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
