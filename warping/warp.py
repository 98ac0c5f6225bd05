"""Landmark-driven dense warps: piecewise-affine (Delaunay) and thin-plate spline.

A ``Warp`` is built once per landmark set as a dense backward map: output pixel ``x`` samples the
input at ``x + displacement[x]``. Images and masks go through ``cv2.remap`` (or ``grid_sample`` in
batches, see :mod:`warping.gpu`); points go through the same map, inverted by Newton's method, so
images, masks and points stay consistent.

Guarantees: the image border is fixed; the displacement fades to zero on an ellipse ``fade``
times the size of the face's landmark ellipse; the map never folds. When the requested landmark
motion would fold (Jacobian determinant below ``min_jacobian``), the motion is shrunk until it does
not, and ``Warp.scale`` tells by how much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

Method = Literal["tps", "pa"]
MIN_JACOBIAN = 0.1  # smallest allowed local area ratio of the map


@dataclass
class Warp:
    """A dense backward map of an H×W image, with the landmarks that define it."""

    displacement: np.ndarray  # (H, W, 2) float32
    src: np.ndarray  # landmarks in the input image
    dst: np.ndarray  # where they land in the output (after any fold-guard shrink)
    method: str
    scale: float = 1.0  # fraction of the requested motion applied
    _fixed: tuple | None = field(default=None, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.displacement.shape[:2]

    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Absolute float32 (map_x, map_y) as ``cv2.remap`` takes them."""
        h, w = self.shape
        return (self.displacement[..., 0] + np.arange(w, dtype=np.float32)[None, :],
                self.displacement[..., 1] + np.arange(h, dtype=np.float32)[:, None])

    def fixed_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """The maps in OpenCV's fixed-point form (fastest remap); computed once."""
        if self._fixed is None:
            self._fixed = cv2.convertMaps(*self.maps(), cv2.CV_16SC2)
        return self._fixed

    def apply(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """The warped image (any dtype and channel count OpenCV remaps)."""
        self._check(image)
        return cv2.remap(image, *self.fixed_maps(), interpolation, borderMode=cv2.BORDER_REFLECT101)

    def apply_mask(self, mask: np.ndarray) -> np.ndarray:
        """A uint8 mask warped with linear interpolation and re-thresholded at 128 (stays 0/255)."""
        warped = self.apply(mask)
        return np.where(warped >= 128, 255, 0).astype(np.uint8)

    def transform_points(self, points: np.ndarray, iterations: int = 8) -> np.ndarray:
        """Where input-image points land in the warped image (solves x + d(x) = p by Newton)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x = points - self._sample(points)
        eps = 0.5
        for _ in range(iterations):
            residual = x + self._sample(x) - points
            ddx = (self._sample(x + [eps, 0]) - self._sample(x - [eps, 0])) / (2 * eps)
            ddy = (self._sample(x + [0, eps]) - self._sample(x - [0, eps])) / (2 * eps)
            jac = np.stack([ddx, ddy], axis=2) + np.eye(2)  # jac[n, i, j] = d(x_i + d_i)/d x_j
            x = x - np.linalg.solve(jac, residual[..., None])[..., 0]
        return x

    def jacobian_determinant(self) -> np.ndarray:
        """Per-pixel Jacobian determinant of the backward map (central differences); > 0 means no fold."""
        map_x, map_y = self.maps()
        gxy = np.gradient(map_x.astype(np.float64))
        gyy = np.gradient(map_y.astype(np.float64))
        return gxy[1] * gyy[0] - gxy[0] * gyy[1]

    def grid(self) -> np.ndarray:
        """(H, W, 2) sampling grid in [-1, 1] for ``torch.nn.functional.grid_sample(align_corners=True)``."""
        h, w = self.shape
        map_x, map_y = self.maps()
        return np.stack([map_x * (2 / max(w - 1, 1)) - 1, map_y * (2 / max(h - 1, 1)) - 1], axis=-1)

    def _sample(self, points: np.ndarray) -> np.ndarray:
        px = np.ascontiguousarray(points[:, 0], dtype=np.float32)[None, :]
        py = np.ascontiguousarray(points[:, 1], dtype=np.float32)[None, :]
        out = cv2.remap(self.displacement, px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out[0].astype(np.float64)

    def _check(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.shape:
            raise ValueError(f"warp built for {self.shape} images, got {image.shape[:2]}")


def build_warp(src: np.ndarray, dst: np.ndarray, shape: tuple[int, int], method: Method = "tps",
               fade: float = 1.6, grid_step: int | None = None, min_jacobian: float = MIN_JACOBIAN) -> Warp:
    """A warp of an image of ``shape`` (H, W) moving landmarks ``src`` to ``dst`` (both (N, 2) pixels).

    ``fade`` is the radius, relative to the landmarks' ellipse, where motion reaches zero;
    ``grid_step`` the spacing of the grid the thin-plate spline is evaluated on before bilinear
    upsampling (default: a twelfth of the face ellipse's smaller radius, 1 to 4 px); the
    piecewise-affine map is exact at every pixel.
    """
    if method not in ("tps", "pa"):
        raise ValueError(f"method must be 'tps' or 'pa', got {method!r}")
    if fade <= 1.0:
        raise ValueError(f"fade must be > 1, got {fade}")
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"src and dst must both be (N, 2), got {src.shape} and {dst.shape}")
    h, w = shape
    build = _build_tps if method == "tps" else _build_pa
    ellipse = _ellipse(np.vstack([src, dst]))
    if grid_step is None:
        grid_step = int(np.clip(ellipse[2].min() / 12, 1, 4))

    def attempt(alpha: float):
        return build(src, src + alpha * (dst - src), (h, w), ellipse, fade, grid_step, min_jacobian)

    scale, displacement = 1.0, attempt(1.0)
    if displacement is None:  # bisect the largest fold-free fraction of the motion
        low, high, displacement = 0.0, 1.0, attempt(0.0)
        for _ in range(8):
            mid = (low + high) / 2
            candidate = attempt(mid)
            if candidate is None:
                high = mid
            else:
                low, displacement = mid, candidate
        scale = low
    return Warp(displacement, src, src + scale * (dst - src), method, scale)


def _ellipse(points: np.ndarray):
    """Centre, axes (as rows) and semi-axis lengths of the smallest PCA-aligned ellipse holding the points."""
    centre = points.mean(0)
    cov = np.cov((points - centre).T) + np.eye(2) * 1e-6
    values, vectors = np.linalg.eigh(cov)
    axes = vectors.T
    local = (points - centre) @ axes.T
    radii = np.sqrt(values)
    radii = radii * np.sqrt(((local / radii) ** 2).sum(1)).max()
    return centre, axes, np.maximum(radii, 1.0)


def _ellipse_radius(xy: np.ndarray, ellipse) -> np.ndarray:
    centre, axes, radii = ellipse
    local = (xy - centre) @ axes.T
    return np.sqrt(((local / radii) ** 2).sum(-1))


def _anchors(shape: tuple[int, int], ellipse, fade: float, count: int = 32) -> np.ndarray:
    """Fixed points: a ring at radius ``fade`` inside the image and points along the image border."""
    h, w = shape
    centre, axes, radii = ellipse
    angles = np.linspace(0, 2 * np.pi, count, endpoint=False)
    ring = centre + (np.stack([np.cos(angles), np.sin(angles)], 1) * radii * fade) @ axes
    margin = 0.02 * min(h, w) + 1
    inside = (ring[:, 0] > margin) & (ring[:, 0] < w - 1 - margin) & (ring[:, 1] > margin) & (ring[:, 1] < h - 1 - margin)
    xs, ys = np.linspace(0, w - 1, 9), np.linspace(0, h - 1, 9)
    border = np.unique(np.vstack([np.stack([xs, np.zeros_like(xs)], 1), np.stack([xs, np.full_like(xs, h - 1)], 1),
                                  np.stack([np.zeros_like(ys), ys], 1), np.stack([np.full_like(ys, w - 1), ys], 1)]), axis=0)
    return np.vstack([ring[inside], border])


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _build_tps(src, dst, shape, ellipse, fade, grid_step, min_jacobian):
    """Thin-plate spline of the backward displacement, faded, on a coarse grid; None if it folds."""
    from scipy.interpolate import RBFInterpolator

    h, w = shape
    gh, gw = max(2, -(-h // grid_step)), max(2, -(-w // grid_step))
    # coarse sample positions that cv2.resize (half-pixel centres) maps back onto exactly
    xs = (np.arange(gw) + 0.5) * (w / gw) - 0.5
    ys = (np.arange(gh) + 0.5) * (h / gh) - 0.5
    grid = np.stack(np.meshgrid(xs, ys), axis=-1)
    anchors = _anchors(shape, ellipse, fade)
    controls = np.vstack([dst, anchors])
    values = np.vstack([src - dst, np.zeros_like(anchors)])
    if not np.any(values):
        return np.zeros((h, w, 2), np.float32)
    spline = RBFInterpolator(controls, values, kernel="thin_plate_spline", smoothing=1e-6)
    disp = spline(grid.reshape(-1, 2)).reshape(gh, gw, 2)
    radius = _ellipse_radius(grid, ellipse)
    weight = 1 - _smoothstep((radius - 1) / (fade - 1))
    edge = np.minimum.reduce([grid[..., 0], w - 1 - grid[..., 0], grid[..., 1], h - 1 - grid[..., 1]])
    weight *= _smoothstep(edge / (0.04 * min(h, w) + 1))
    disp *= weight[..., None]
    if _min_cell_jacobian(grid + disp, w / gw, h / gh) < min_jacobian:
        return None
    return cv2.resize(disp.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def _min_cell_jacobian(mapped: np.ndarray, step_x: float, step_y: float) -> float:
    """Smallest Jacobian determinant of the bilinear map through a grid of mapped points (at cell corners)."""
    dx = (mapped[:, 1:] - mapped[:, :-1]) / step_x  # along x, (gh, gw-1, 2)
    dy = (mapped[1:] - mapped[:-1]) / step_y  # along y, (gh-1, gw, 2)

    def det(a, b):
        return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

    corners = [det(dx[:-1], dy[:, :-1]), det(dx[:-1], dy[:, 1:]), det(dx[1:], dy[:, :-1]), det(dx[1:], dy[:, 1:])]
    return float(min(c.min() for c in corners))


def _build_pa(src, dst, shape, ellipse, fade, grid_step, min_jacobian):
    """Piecewise-affine map over a Delaunay mesh of the output landmarks and anchors; None if it folds."""
    from scipy.spatial import Delaunay

    h, w = shape
    anchors = _anchors(shape, ellipse, fade)
    out_pts = np.vstack([dst, anchors])
    in_pts = np.vstack([src, anchors])
    tris = Delaunay(out_pts).simplices
    out_tri, in_tri = out_pts[tris], in_pts[tris]

    def area(t):
        return (t[:, 1, 0] - t[:, 0, 0]) * (t[:, 2, 1] - t[:, 0, 1]) - (t[:, 1, 1] - t[:, 0, 1]) * (t[:, 2, 0] - t[:, 0, 0])

    out_area, in_area = area(out_tri), area(in_tri)
    valid = np.abs(out_area) > 1e-9
    if np.any(in_area[valid] / out_area[valid] < min_jacobian):
        return None
    # per-triangle affine (output -> input): solve [x y 1] A = [x' y']
    homog = np.concatenate([out_tri, np.ones((len(tris), 3, 1))], axis=2)
    affines = np.linalg.solve(homog[valid], in_tri[valid])  # (T, 3, 2)
    kept = out_tri[valid]
    index = np.zeros((h, w), np.int32)
    for i, tri in enumerate(kept):  # rasterise, then fix pixels whose triangle is not exactly theirs
        cv2.fillConvexPoly(index, np.round(tri * 16).astype(np.int32), i, lineType=cv2.LINE_8, shift=4)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    to_bary = np.linalg.inv(np.concatenate([kept.transpose(0, 2, 1), np.ones((len(kept), 1, 3))], axis=1)).astype(np.float32)
    m = to_bary[index]  # (H, W, 3, 3)
    bary = m[..., 0] * xs[..., None] + m[..., 1] * ys[..., None] + m[..., 2]
    wrong = bary.min(-1) < -1e-4
    if wrong.any():  # the triangle that holds each such pixel best (largest smallest barycentric)
        py, px = np.nonzero(wrong)
        pix = np.stack([px, py, np.ones_like(px)]).astype(np.float32)  # (3, N)
        holds = np.einsum("tij,jn->tin", to_bary, pix).min(1)  # (T, N)
        index[py, px] = holds.argmax(0)
    a = affines.astype(np.float32)[index]  # (H, W, 3, 2)
    disp = np.empty((h, w, 2), np.float32)
    disp[..., 0] = a[..., 0, 0] * xs + a[..., 1, 0] * ys + a[..., 2, 0] - xs
    disp[..., 1] = a[..., 0, 1] * xs + a[..., 1, 1] * ys + a[..., 2, 1] - ys
    return disp
