"""The canonical landmark set ``face68`` and its correspondences across detectors.

``face68`` follows the 68-point iBUG/dlib layout (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47,
outer lips 48-59, inner lips 60-67), "left" meaning left in the image. The mediapipe 478-point
mesh is mapped onto it vertex by vertex: each index below is the mesh vertex nearest (in
eye-distance units) to dlib's point over the 61 photos of the deepface test set, made symmetric.
Jaw points are the mesh vertices on dlib's jaw line, which lies a little inside the mesh's oval.

This module is the one home of landmark indices: besides the correspondences it names the regions of
the mesh that the teachers draw and measure, and each scheme's five alignment keypoints.
"""

from __future__ import annotations

import numpy as np

CANONICAL = "face68"

MEDIAPIPE478_TO_FACE68 = (
    127, 234, 147, 215, 138, 136, 149, 148, 152, 377, 378, 365, 367, 435, 376, 454, 356,  # jaw
    70, 63, 105, 66, 55, 285, 296, 334, 293, 300,  # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose
    33, 160, 158, 155, 153, 144, 382, 385, 387, 263, 373, 380,  # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 82, 13, 312, 308, 317, 14, 87,  # inner lips
)

# Regions of mediapipe's 478-point mesh; "left" is left in the image. Eye and brow lists run from the
# outer end to the inner end.
FACE_OVAL = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176,
             149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109]
JAW = [361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132]
EYES = (  # (upper lid, lower lid, iris centre, iris ring): the image-left eye, then the image-right one
    ([33, 246, 161, 160, 159, 158, 157, 173, 133], [33, 7, 163, 144, 145, 153, 154, 155, 133], 468, [469, 470, 471, 472]),
    ([263, 466, 388, 387, 386, 385, 384, 398, 362], [263, 249, 390, 373, 374, 380, 381, 382, 362], 473, [474, 475, 476, 477]),
)
IRISES = (468, 473)  # iris centres: image-left, image-right
BROWS = (([70, 63, 105, 66, 107], [46, 53, 52, 65, 55]), ([300, 293, 334, 296, 336], [276, 283, 282, 295, 285]))
LIPS_OUTER = [61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]
LIPS_INNER_UPPER = [78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308]
LIPS_INNER_LOWER = [78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308]
LIPS_INNER_MIDDLE = (13, 14)  # upper, lower: how far the mouth is open
UNDER_LOWER_LIP = [84, 17, 314]  # the shadow line under the lower lip
MOUTH_CORNERS = (61, 291)
NOSE_TIP = 1
NOSE_UNDER = [98, 97, 2, 326, 327]
CHEEKS = [205, 425]  # cheek centres below the eyes
CHIN = 152
TEMPLES = (127, 356)  # the face's sides near the ears, where glasses' arms meet them
# Skin patches for measuring skin tone: cheek polygons around the cheek centres below the eyes and outside
# the nose; the forehead between the brows' tops and the middle of the forehead (low enough to stay under
# most fringes).
SKIN_REGIONS = {
    "left_cheek": (117, 118, 101, 36, 205, 187, 123, 50),
    "right_cheek": (346, 347, 330, 266, 425, 411, 352, 280),
    "forehead": (69, 108, 151, 337, 299, 296, 9, 66),
}

# Indices of (left eye, right eye, nose tip, left mouth corner, right mouth corner), "left" as seen
# in the image, for each landmark scheme (what face alignment uses). Eyes of the 478-point mesh are its
# iris centres.
KEYPOINTS5 = {
    "mediapipe478": ([IRISES[0]], [IRISES[1]], [NOSE_TIP], [MOUTH_CORNERS[0]], [MOUTH_CORNERS[1]]),
    "dlib68": (list(range(36, 42)), list(range(42, 48)), [30], [48], [54]),
    "keypoints5": ([0], [1], [2], [3], [4]),
}
# dlib's 5-point layout (image-right eye outer, inner; image-left eye outer, inner; nose base), what
# dlib's face embedding aligns by, as indices of other landmark schemes.
DLIB5_FROM = {
    "dlib68": [45, 42, 36, 39, 33],
    "mediapipe478": [263, 362, 33, 133, 2],
}

SCHEMES = {
    "face68": tuple(range(68)),
    "dlib68": tuple(range(68)),
    "mediapipe478": MEDIAPIPE478_TO_FACE68,
}

GROUPS = {
    "jaw": tuple(range(0, 17)),
    "chin": tuple(range(5, 12)),
    "left_brow": tuple(range(17, 22)),
    "right_brow": tuple(range(22, 27)),
    "nose": tuple(range(27, 36)),
    "left_eye": tuple(range(36, 42)),
    "right_eye": tuple(range(42, 48)),
    "mouth": tuple(range(48, 68)),
}

# face68 index of each point's mirror image (left <-> right).
MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def to_canonical(points: np.ndarray, scheme: str) -> np.ndarray:
    """(68, 2) face68 points from a detector's landmarks in ``scheme`` (mediapipe478, dlib68, face68)."""
    if scheme not in SCHEMES:
        raise ValueError(f"no face68 correspondence for landmark scheme {scheme!r} (known: {sorted(SCHEMES)})")
    points = np.asarray(points, dtype=np.float64)
    needed = max(SCHEMES[scheme]) + 1
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] < needed:
        raise ValueError(f"{scheme} landmarks must be (N>={needed}, 2), got {points.shape}")
    return points[list(SCHEMES[scheme])].copy()


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the left and right eye of face68 points."""
    return points[list(GROUPS["left_eye"])].mean(0), points[list(GROUPS["right_eye"])].mean(0)


def eye_distance(points: np.ndarray) -> float:
    left, right = eye_centres(points)
    return float(np.hypot(*(right - left)))


def mirror(points: np.ndarray) -> np.ndarray:
    """The mirror image of face68 points in a frame whose x = 0 is the face's midline."""
    flipped = points[MIRROR].copy()
    flipped[:, 0] *= -1
    return flipped


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity transform taking ``src`` points onto ``dst`` (Umeyama)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(sig) @ sign) / s.var(0).sum()
    linear = scale * rot
    return np.hstack([linear, (mu_d - linear @ mu_s)[:, None]])


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2])[:, None]])


def eye_frame(points: np.ndarray) -> np.ndarray:
    """2×3 similarity putting the eye midpoint at the origin, the eyes on the x-axis, eye distance 1."""
    left, right = eye_centres(points)
    axis = right - left
    scale = np.hypot(*axis)
    cos, sin = axis / scale**2
    rot = np.array([[cos, sin], [-sin, cos]])
    mid = (left + right) / 2
    return np.hstack([rot, (-rot @ mid)[:, None]])
