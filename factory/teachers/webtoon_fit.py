"""Fitting a webtoon style on images of one webtoon, and previewing styles: measurements of aligned
drawn faces, the ranges and background treatments estimated from them.

Split from :mod:`factory.teachers.webtoon_style` (the style file itself), which the teacher imports:
fitting and previews draw with the teacher, so they live beside both and neither imports them back.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from factory.errors import UserError
from factory.teachers.webtoon import draw_parameters, draw_webtoon, polygon_mask
from factory.teachers.webtoon_style import BACKGROUNDS, BASE_RANGES, BOUNDS, Background, Style
from warping.landmarks import BROWS, CHEEKS, EYES, FACE_OVAL, IRISES, LIPS_OUTER

# The same measurement on real photos (median hair-zone chroma of the 76 shared deepface and
# face_recognition faces): a style's saturation is relative to it.
PHOTO_CHROMA = 16.6
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


def align_face(image: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray] | None:
    """The largest face as the face stage crops it: (RGB crop, 478 mesh points in crop pixels), or None."""
    aligned = align_face_in_frame(image, size)
    return None if aligned is None else aligned[:2]


def align_face_in_frame(image: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``align_face`` plus the crop's in-frame mask (1 where the crop shows the image, 0 on padding)."""
    from factory.faces import alignment_matrix, crop, in_frame, shared_detector, transform_points

    faces = [f for f in shared_detector("mediapipe", min_size=16).detect(image) if f.scheme == "mediapipe478"]
    if not faces:
        return None
    matrix = alignment_matrix(faces[0].keypoints5(), size)
    return crop(image, matrix, size), transform_points(faces[0].landmarks, matrix), in_frame(image.shape, matrix, size)


def hair_zone(oval: np.ndarray, points: np.ndarray, iod: float) -> np.ndarray:
    """Where an aligned face's hair is, more often than not: a band around the face oval above the eyes."""
    ring = cv2.dilate(oval.astype(np.uint8), np.ones((max(3, int(iod * 0.8) | 1),) * 2, np.uint8)) > 0
    eye_line = float(min(points[IRISES[0]][1], points[IRISES[1]][1]))
    return ring & ~oval & (np.arange(oval.shape[0])[:, None] < eye_line)


def measure_webtoon(crop: np.ndarray, points: np.ndarray, frame: np.ndarray | None = None) -> dict[str, float]:
    """What one aligned webtoon face says about its style (colours in OpenCV float Lab).

    The background is measured beside the head, above the eyes, on pixels of the image (``frame``,
    when the crop leaves the image: padding is not background); with too few of them the border
    measurements are None and the image says nothing about backgrounds.
    """
    lab = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    iod = float(np.linalg.norm(points[IRISES[1]] - points[IRISES[0]]))
    oval = polygon_mask(crop.shape, points[FACE_OVAL]) > 0.5
    features = np.zeros(crop.shape[:2], np.uint8)
    for part in [np.vstack([points[u], points[lo][::-1]]) for u, lo, _, _ in EYES] + \
                [np.vstack([points[u], points[lo][::-1]]) for u, lo in BROWS] + [points[LIPS_OUTER]]:
        cv2.fillPoly(features, [np.round(part).astype(np.int32)], 1)
    features = cv2.dilate(features, np.ones((max(3, int(iod * 0.2) | 1),) * 2, np.uint8))
    skin_pixels = lab[oval & (features == 0)]
    skin = np.median(skin_pixels, 0)
    near = (np.abs(skin_pixels[:, 1:] - skin[1:]).max(1) < 12) & (np.abs(skin_pixels[:, 0] - skin[0] + 8) < 22)
    # (skin tones and their shadows; not hair over the forehead, not drawn lines)
    light = skin_pixels[near, 0].astype(np.float32)
    threshold, _ = cv2.threshold(np.clip(light, 0, 100).astype(np.uint8).reshape(-1, 1), 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark = light < threshold
    depth = float(light[~dark].mean() - light[dark].mean()) if 0 < dark.sum() < len(light) else 0.0
    share = float(dark.mean()) if depth > 5 else 0.0
    blackhat = cv2.morphologyEx(lab[..., 0], cv2.MORPH_BLACKHAT, np.ones((max(3, int(iod * 0.15) | 1),) * 2, np.uint8))
    lines = ((blackhat > 18) & (lab[..., 0] < skin[0] - 25)).astype(np.uint8)
    widths = cv2.distanceTransform(lines, cv2.DIST_L2, 3)
    ridge = (widths > 0) & (widths >= cv2.dilate(widths, np.ones((3, 3), np.uint8)))
    line_width = float(2 * np.median(widths[ridge]) / iod) if ridge.any() else 0.03
    ink_pixels = lab[lines > 0]
    ink_pixels = ink_pixels[ink_pixels[:, 0] <= np.percentile(ink_pixels[:, 0], 33)] if len(ink_pixels) else ink_pixels
    ink = np.median(ink_pixels, 0) if len(ink_pixels) else np.array([15.0, 5.0, 5.0])  # outlines, not coloured lines
    iris = np.zeros(crop.shape[:2], np.uint8)
    for _, _, centre, ring in EYES:
        radius = float(np.linalg.norm(points[ring] - points[centre], axis=1).mean())
        cv2.circle(iris, tuple(int(v) for v in np.round(points[centre])), max(1, int(radius)), 1, -1)
    bright = float(np.mean(lab[iris > 0, 0] > 80)) if iris.any() else 0.0
    cheek_a = np.median([lab[int(p[1]) - 3:int(p[1]) + 4, int(p[0]) - 3:int(p[0]) + 4, 1].mean()
                         for p in points[CHEEKS]])
    hair = hair_zone(oval, points, iod)
    frame = np.ones(crop.shape[:2], np.uint8) if frame is None else (frame > 0.5).astype(np.uint8)
    beside_head = ~(cv2.dilate(oval.astype(np.uint8), np.ones((max(3, int(iod * 1.2) | 1),) * 2, np.uint8)) > 0)
    zone = (cv2.erode(frame, np.ones((5, 5), np.uint8)) > 0) & beside_head
    zone[int(max(points[IRISES[0]][1], points[IRISES[1]][1])):] = False
    border = lab[zone] if zone.sum() >= 200 else None
    detail = np.abs(cv2.Laplacian(np.ascontiguousarray(lab[..., 0]), cv2.CV_32F))
    return {
        "skin_L": float(skin[0]), "skin_a": float(skin[1]), "skin_b": float(skin[2]),
        "ink_L": float(ink[0]), "ink_a": float(ink[1]), "ink_b": float(ink[2]),
        "shadow_share": share, "shadow_depth": depth, "line_width": line_width,
        "saturation": float(np.median(np.hypot(lab[hair, 1], lab[hair, 2])) / PHOTO_CHROMA) if hair.any() else 1.0,
        "highlight_size": float(np.sqrt(bright)), "blush": float(np.clip((cheek_a - skin[1]) / 24.0, 0.0, 1.0)),
        **({"border_std": None, "border_detail": None, "border_L": None, "border_a": None, "border_b": None}
           if border is None else
           {"border_std": float(np.mean(border.std(0))), "border_detail": float(detail[zone].mean()),
            "border_L": float(np.median(border[:, 0])), "border_a": float(np.median(border[:, 1])),
            "border_b": float(np.median(border[:, 2]))}),
    }


def background_kind(measure: dict[str, float]) -> Background | None:
    """How a webtoon panel's background was treated, judged beside the head (None: too little of it shows)."""
    if measure["border_std"] is None:
        return None
    if measure["border_std"] < 4.0:
        return "plain"
    if measure["border_detail"] < 1.5:
        return "blur"
    if measure["border_detail"] < 4.0:
        return "flatten"
    return "keep"


def fitted_range(values: list[float], name: str, min_width: float) -> tuple[float, float]:
    """The middle of the measured values (20th-80th percentile), at least ``min_width`` wide, within bounds."""
    low, high = BOUNDS[name]
    lo, hi = np.percentile(values, [20, 80])
    centre = (lo + hi) / 2
    half = max((hi - lo) / 2, min_width / 2)
    lo, hi = float(np.clip(centre - half, low, high)), float(np.clip(centre + half, low, high))
    return round(lo, 4), round(hi, 4)


def fit_style(images: list[np.ndarray], name: str = "fitted") -> tuple[Style, dict]:
    """Estimate a style from 8-300 RGB images of one webtoon's faces: (style, report).

    Estimated: skin and ink colours, shadow depth (the measured shadow share is reported: where shadows fall follows the photo), saturation (of the hair), line width
    (relative to the inter-ocular distance), eye highlight size, blush, background treatments and
    palette. The other parameters keep ``BASE_RANGES``. The report lists each image's measurements
    and the images where no face was found.
    """
    if not 8 <= len(images) <= 300:
        raise UserError(f"fit_style needs 8-300 images of one webtoon, got {len(images)}")
    measures, skipped = [], []
    for index, image in enumerate(images):
        aligned = align_face_in_frame(image)
        if aligned is None:
            skipped.append(index)
            continue
        measures.append(measure_webtoon(*aligned))
    if len(measures) < 4:
        raise UserError(f"fit_style: a face was found in only {len(measures)} of {len(images)} images (need 4)")
    column = {key: [m[key] for m in measures] for key in measures[0]}
    ranges = dict(BASE_RANGES)
    for key, width in (("shadow_depth", 6.0), ("line_width", 0.01),
                       ("saturation", 0.2), ("highlight_size", 0.1), ("blush", 0.15)):
        ranges[key] = fitted_range(column[key], key, width)
    kinds = [background_kind(m) for m in measures]
    seen = [kind for kind in kinds if kind is not None]
    backgrounds = {kind: round((seen.count(kind) + 1) / (len(seen) + len(BACKGROUNDS)), 4) for kind in BACKGROUNDS}
    plain = [m for m, kind in zip(measures, kinds) if kind in ("plain", "flatten")] or \
        [m for m, kind in zip(measures, kinds) if kind is not None]
    if not plain:  # no image showed its background: a light paper tone
        plain = [{"border_L": 95.0, "border_a": 0.0, "border_b": 2.0}]
    palette_lab = np.array([[m["border_L"], m["border_a"], m["border_b"]] for m in plain], np.float32)
    palette_rgb = np.clip(cv2.cvtColor(palette_lab.reshape(-1, 1, 3), cv2.COLOR_Lab2RGB).reshape(-1, 3) * 255, 0, 255)
    style = Style(
        name=name,
        fitted_on={"images": len(images), "faces": len(measures)},
        skin_lab=tuple(round(float(np.median(column[k])), 2) for k in ("skin_L", "skin_a", "skin_b")),
        ink_lab=tuple(round(float(np.median(column[k])), 2) for k in ("ink_L", "ink_a", "ink_b")),
        ranges=ranges,
        backgrounds=backgrounds,
        palette=[tuple(int(v) for v in colour) for colour in palette_rgb[:12].round()],
    )
    return style, {"measures": measures, "skipped": skipped, "backgrounds": kinds}


def fit_style_from_folder(folder: str | Path, exclude: list[str] = (), name: str | None = None) -> tuple[Style, dict]:
    """``fit_style`` on every image in ``folder`` except the file names in ``exclude`` (the CLI's FOLDER, --exclude)."""
    from factory.images import BadImage, read_image

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: option 'FOLDER': not a folder of webtoon images")
    unknown = sorted(set(exclude) - {p.name for p in folder.iterdir()})
    if unknown:
        raise UserError(f"{folder}: option '--exclude': no such files {unknown}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in set(exclude))
    if not 8 <= len(files) <= 300:
        raise UserError(f"{folder}: option 'FOLDER': style fitting needs 8-300 images, found {len(files)}")
    images = []
    for path in files:
        try:
            images.append(read_image(path))
        except BadImage as exc:
            raise UserError(f"{path}: option 'FOLDER': unreadable image ({exc})") from None
    style, report = fit_style(images, name=name or folder.name)
    style = style.model_copy(update={"fitted_on": {**style.fitted_on, "folder": folder.name, "excluded": sorted(exclude)}})
    report["files"] = [p.name for p in files]
    report["skipped"] = [files[i].name for i in report["skipped"]]
    return style, report


def preview(photo: np.ndarray, styles: dict[str, Style], size: int = 256) -> np.ndarray:
    """photo | one drawing per style, side by side under headers (RGB uint8), for ``style preview``.

    Each drawing uses the centre of every range of its style. Raises UserError when the photo has no face.
    """
    from factory.stages.segment import MediapipeMasker

    aligned = align_face(photo, size)
    if aligned is None:
        raise UserError("option 'PHOTO': no face found in the photo")
    crop, points = aligned
    person = MediapipeMasker()(crop)
    panels = {"photo": crop}
    for label, style in styles.items():
        params = draw_parameters(style.ranges, style.backgrounds, style.palette, None)
        panels[label] = draw_webtoon(crop, points, person, params, style)
    header = max(18, size // 12)
    columns = []
    for label, panel in panels.items():
        strip = np.full((header, size, 3), 255, np.uint8)
        cv2.putText(strip, label, (6, int(header * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, header / 36, (20, 20, 20), 1,
                    cv2.LINE_AA)
        columns.append(np.vstack([strip, panel]))
    return np.hstack(columns)
