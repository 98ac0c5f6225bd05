"""Warping: landmark correspondences, the profile and its knobs, TPS / piecewise-affine warps."""

import json

import cv2
import numpy as np
import pytest

from warping import landmarks as lm
from warping.profile import Knobs, ProfileError, fit_profile, load_profile
from warping.warp import build_warp

EXAGGERATED = dict(eye_scale=1.35, eye_height=0.1, jaw_width=0.85, chin_width=0.8, face_length=0.9, nose_scale=0.7,
                   mouth_scale=0.8)  # all at once, strong enough to fold a 128 px face: the guard shrinks it
STRONG = dict(eye_scale=1.25, eye_height=0.05, jaw_width=0.9, chin_width=0.85, face_length=0.95, nose_scale=0.8,
              mouth_scale=0.85)


def face_in_image(size=128, scale=None, centre=None):
    """The default profile's mean human face placed in a size×size image."""
    shape = load_profile().mean_real
    scale = scale or size / 5.0
    centre = np.array(centre if centre is not None else (size / 2, size * 0.42))
    return shape * scale + centre


def textured(size=128, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)


def test_mediapipe_correspondence_is_a_mirror_symmetric_68_point_map():
    assert len(lm.MEDIAPIPE478_TO_FACE68) == 68 and len(set(lm.MEDIAPIPE478_TO_FACE68)) == 68
    assert sorted(lm.MIRROR) == list(range(68)) and (lm.MIRROR[lm.MIRROR] == np.arange(68)).all()
    mesh = np.random.default_rng(0).random((478, 2))
    np.testing.assert_array_equal(lm.to_canonical(mesh, "mediapipe478")[8], mesh[152])  # chin
    with pytest.raises(ValueError, match="keypoints5"):
        lm.to_canonical(mesh[:5], "keypoints5")


def test_similarity_recovers_a_known_transform():
    pts = face_in_image()
    angle, scale = 0.3, 1.7
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = pts @ rot.T + [5.0, -3.0]
    np.testing.assert_allclose(lm.apply_affine(pts, lm.similarity(pts, moved)), moved, atol=1e-9)


def test_knobs_are_exactly_invertible():
    shape = load_profile().mean_real
    knobs = Knobs(**EXAGGERATED)
    np.testing.assert_allclose(knobs.apply(knobs.apply(shape), inverse=True), shape, atol=1e-12)
    eyes = list(lm.GROUPS["left_eye"])
    width = np.ptp(knobs.apply(shape)[eyes, 0]) / np.ptp(shape[eyes, 0])
    assert width == pytest.approx(1.35)
    with pytest.raises(ValueError, match="eye_scale"):
        Knobs(eye_scale=0)


def test_default_profile_has_webtoon_traits():
    profile = load_profile()
    real, toon = profile.mean_real, profile.mean_toon
    eye = list(lm.GROUPS["left_eye"])
    assert np.ptp(toon[eye, 1]) > np.ptp(real[eye, 1])  # taller eyes
    assert toon[8, 1] < real[8, 1]  # chin higher (shorter lower face)
    assert toon[14, 0] - toon[2, 0] < real[14, 0] - real[2, 0]  # narrower jaw
    np.testing.assert_allclose(lm.mirror(toon), toon, atol=1e-4)  # symmetric


def test_target_strength_and_round_trip():
    profile = load_profile().with_knobs(**EXAGGERATED)
    pts = face_in_image(256)
    np.testing.assert_allclose(profile.target(pts, "forward", 0.0), pts, atol=1e-9)
    toon = profile.target(pts, "forward", 1.0)
    half = profile.target(pts, "forward", 0.5)
    assert np.abs(half - pts).mean() == pytest.approx(np.abs(toon - pts).mean() / 2, rel=0.1)
    back = profile.target(toon, "inverse", 1.0)
    assert np.abs(back - pts).max() / lm.eye_distance(pts) < 0.02


def test_profile_file_errors_name_the_file_and_field(tmp_path):
    with pytest.raises(ProfileError, match="missing.json"):
        load_profile(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"scheme": "face68", "mean_real": [[0, 0]] * 3, "mean_toon": [[0, 0]] * 68}))
    with pytest.raises(ProfileError, match="mean_real"):
        load_profile(bad)
    bad.write_text("{not json")
    with pytest.raises(ProfileError, match="bad.json"):
        load_profile(bad)


def test_fit_profile_recovers_a_planted_displacement(tmp_path):
    rng = np.random.default_rng(1)
    base = face_in_image(256)
    planted = Knobs(eye_scale=1.3, face_length=0.9)
    frame = lm.eye_frame(base)
    toon_base = lm.apply_affine(planted.apply(lm.apply_affine(base, frame)), lm.invert_affine(frame))

    def jitter(shape):
        angle, scale, shift = rng.normal(0, 0.1), rng.uniform(0.7, 1.4), rng.normal(0, 20, 2)
        rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return (shape + rng.normal(0, 0.3, shape.shape)) @ rot.T + shift

    profile = fit_profile([jitter(base) for _ in range(20)], [jitter(toon_base) for _ in range(20)])
    expected = lm.apply_affine(toon_base, lm.similarity(toon_base, profile.mean_real))
    assert np.abs(profile.mean_toon - expected).max() < 0.02
    (tmp_path / "p.json").write_text(profile.to_text())
    np.testing.assert_allclose(load_profile(tmp_path / "p.json").mean_toon, profile.mean_toon, atol=1e-4)


@pytest.mark.parametrize("method", ["tps", "pa"])
def test_warp_moves_landmarks_keeps_border_and_fades_out(method):
    pts = face_in_image(128, scale=18)
    dst = load_profile().with_knobs(**STRONG).target(pts, "forward", 1.0)
    warp = build_warp(pts, dst, (128, 128), method, fade=1.6)
    assert warp.scale == 1.0
    np.testing.assert_allclose(warp.transform_points(pts), dst, atol=0.5)  # the dense map is sampled per pixel
    disp = warp.displacement
    for edge in (disp[0], disp[-1], disp[:, 0], disp[:, -1]):
        assert np.abs(edge).max() < 1e-3
    ys, xs = np.mgrid[0:128, 0:128]
    from warping.warp import _ellipse, _ellipse_radius

    radius = _ellipse_radius(np.stack([xs, ys], -1).astype(float), _ellipse(np.vstack([pts, dst])))
    assert np.abs(disp[radius > 1.7]).max() < 1e-3  # nothing moves beyond the fade ellipse
    assert warp.jacobian_determinant().min() > 0


@pytest.mark.parametrize("method", ["tps", "pa"])
def test_fold_guard_shrinks_motion_that_would_fold(method):
    pts = face_in_image(128, scale=18)
    thrown = pts.copy()
    thrown[36:42] = thrown[42:48].mean(0)  # left eye thrown onto the right eye
    exaggerated = load_profile().with_knobs(**EXAGGERATED).target(pts, "forward", 1.0)
    for dst, must_shrink in ((thrown, True), (exaggerated, method == "tps")):
        warp = build_warp(pts, dst, (128, 128), method)
        assert 0 < warp.scale < 1 if must_shrink else warp.scale == 1
        assert warp.jacobian_determinant().min() > 0


@pytest.mark.parametrize("method", ["tps", "pa"])
def test_images_masks_and_points_move_together(method):
    pts = face_in_image(128, scale=18)
    dst = load_profile().with_knobs(**STRONG).target(pts, "forward", 1.0)
    warp = build_warp(pts, dst, (128, 128), method)
    probe = np.array([[50.0, 45.0], [78.0, 80.0], [64.0, 100.0]])
    moved = warp.transform_points(probe)
    for (x, y), (mx, my) in zip(probe, moved):
        mask = np.zeros((128, 128), np.uint8)
        cv2.circle(mask, (int(round(x * 16)), int(round(y * 16))), 40, 255, -1, cv2.LINE_AA, shift=4)  # r = 2.5 px
        image = np.dstack([mask] * 3)
        for out in (warp.apply_mask(mask), warp.apply(image)[..., 0]):
            weights = out.astype(float)
            cy, cx = (np.indices(out.shape) * weights).reshape(2, -1).sum(1) / weights.sum()
            assert np.hypot(cx - mx, cy - my) < 0.8  # a blob's centroid moves a little under a non-affine map
    assert set(np.unique(warp.apply_mask(mask))) <= {0, 255}
    # a coordinate image warped like any image reads, at each moved point, the point it came from
    coords = np.dstack(np.meshgrid(np.arange(128, dtype=np.float32), np.arange(128, dtype=np.float32)))
    warped = cv2.remap(coords, *warp.maps(), cv2.INTER_LINEAR)
    sampled = cv2.remap(warped, moved[:, :1].astype(np.float32).T, moved[:, 1:].astype(np.float32).T, cv2.INTER_LINEAR)
    np.testing.assert_allclose(sampled[0], probe, atol=0.05)


@pytest.mark.parametrize("method", ["tps", "pa"])
def test_forward_then_inverse_returns_the_image(method):
    image = textured(128)
    pts = face_in_image(128, scale=18)
    dst = load_profile().target(pts, "forward", 1.0)
    forward = build_warp(pts, dst, (128, 128), method)
    back = build_warp(forward.dst, forward.src, (128, 128), method)
    restored = back.apply(forward.apply(image))
    moved = np.abs(forward.displacement).max(-1) > 0.5
    error = np.abs(restored.astype(int) - image)[moved].mean()
    blur = np.abs(cv2.GaussianBlur(image, (3, 3), 0.6).astype(int) - image)[moved].mean()
    assert error < max(3.0, 1.5 * blur)


def test_grid_sample_with_the_warp_grid_matches_cv2_remap():
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    images = [textured(96, seed=s) for s in range(3)]
    warps = [build_warp(face_in_image(96, scale=14), load_profile().target(face_in_image(96, scale=14), "forward", s),
                        (96, 96), "tps") for s in (0.3, 0.6, 1.0)]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    grids = torch.from_numpy(np.stack([w.grid() for w in warps]).astype(np.float32))
    out = F.grid_sample(batch, grids, padding_mode="border", align_corners=True).permute(0, 2, 3, 1).numpy()
    for image, warp, got in zip(images, warps, out):
        expected = cv2.remap(image, *warp.maps(), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert np.abs(got - expected).mean() < 0.5


def test_bad_arguments():
    pts = face_in_image()
    with pytest.raises(ValueError, match="method"):
        build_warp(pts, pts, (128, 128), "nope")
    with pytest.raises(ValueError, match="fade"):
        build_warp(pts, pts, (128, 128), fade=1.0)
    with pytest.raises(ValueError, match="warp built for"):
        build_warp(pts, pts, (128, 128)).apply(np.zeros((64, 64, 3), np.uint8))
