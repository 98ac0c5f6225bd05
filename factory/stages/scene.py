"""Scene pairs (``output.frame: scene``): whole frames with their people, bodies and background drawn.

As WebtoonMe composes its full-body pairs: a crop at ``output.size`` around at least one person is
drawn by a scene teacher (by default the webtoon teacher's flat-colour scene drawing); every face in
the crop is drawn by the face teacher on its aligned crop and pasted back through the inverse
alignment, inside the face mesh's hull, feathered and blended in two bands so no crop box shows;
the body's skin (person mask ∩ a colour model of the face's skin) is recoloured to the drawn face's
skin tone. The gates then check a toon face for every real one and the seam's visibility.
"""

from __future__ import annotations

import cv2
import numpy as np
from pydantic import Field, model_validator

from factory.config import Strict
from factory.faces import Face, alignment_matrix, crop, invert_matrix, transform_points
from factory.kinds import TeacherConfig
from factory.sample import Sample, sample_seed
from factory.stage import Stage
from factory.stages.face_crop import FacesConfig
from factory.teachers.webtoon import (FaceFrame, WebtoonConfig, WebtoonScene, WebtoonTeacher, bare_face, odd,
                                      remove_specks, to_lab, to_rgb)

# Inter-ocular distance of a face without iris landmarks: its box side times this.
IOD_PER_BOX = 0.4
# Largest chroma spread (Lab a and b) of a face's skin model.
MAX_CHROMA_SPREAD = 6.0
# Most body skin one face may give colour to, times its pasted hull's area: more means the colour model
# takes in clothes or background (dark, warm-lit frames), and is tightened.
MAX_BODY_SKIN = 2.0


class SceneConfig(Strict):
    """How scene pairs are framed and composed (used with ``output.frame: scene``)."""

    teacher: TeacherConfig | None = Field(
        None, description="draws everything but the faces; unset: the webtoon teacher's scene drawing, in the "
                          "face teacher's style when that is webtoon")
    zoom: tuple[float, float] = Field((2.0, 6.0), description="crop side over the chosen person's face size, "
                                                               "a [low, high] range drawn per sample")
    face_size: int = Field(256, ge=64, le=1024, description="side of the aligned crop the face teacher draws")
    hull_grow: float = Field(0.3, ge=0.0, le=1.5, description="the face mesh's hull grown by this × the "
                                                              "inter-ocular distance before it is pasted")
    feather: float = Field(0.12, gt=0.0, le=1.0, description="paste mask's feather sigma × the inter-ocular distance")
    skin: bool = Field(True, description="recolour the body's skin to the drawn face's skin tone")
    skin_distance: float = Field(3.5, gt=0.0, le=10.0, description="largest distance from the face's skin colour "
                                                                    "(in its spreads) that is skin")

    @model_validator(mode="after")
    def _zoom_increasing(self):
        if not 1.0 <= self.zoom[0] <= self.zoom[1]:
            raise ValueError(f"zoom: [{self.zoom[0]}, {self.zoom[1]}] must be increasing and at least 1")
        return self

    def build_teacher(self, face_teacher: TeacherConfig):
        """The scene teacher: the configured one, or the webtoon scene drawing (in the face teacher's style)."""
        config = self.teacher or (face_teacher if face_teacher.kind == "webtoon" else WebtoonConfig(kind="webtoon"))
        return WebtoonScene(config) if config.kind == "webtoon" else config.build()


def drawing(teacher, image: np.ndarray, sample: Sample) -> tuple[np.ndarray, dict]:
    """A teacher's drawing of ``image`` and its provenance (the webtoon teachers record drawn values)."""
    if isinstance(teacher, WebtoonTeacher):
        return teacher.draw(image, sample)
    out = teacher.translate([image], [sample])[0]
    if out.shape != image.shape:
        raise RuntimeError(f"teacher returned {out.shape} for input {image.shape}")
    return out, teacher.describe()


class SceneCropStage(Stage):
    """Finds the photo's faces, frames a square around one of them (``scene.zoom`` × its size) and
    resizes it to ``output.size``; records every face the crop holds, in crop pixels."""

    name = "faces"

    def __init__(self, config: SceneConfig, faces: FacesConfig, size: int):
        self.config = config
        self.faces = faces
        self.size = size
        self.detector = faces.shared_detector()

    def process(self, sample: Sample) -> Sample:
        image = sample.real
        found = self.detector.detect(image)
        if not found:
            return sample.reject("no_face")
        rng = sample.rng("scene")
        anchor = found[int(rng.integers(len(found)))]
        window = crop_window(image.shape, anchor.box, anchor.size * rng.uniform(*self.config.zoom), self.size, rng)
        x0, y0, side = window
        scale = self.size / side
        matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]])
        sample.real = crop(image, matrix, self.size)
        # faces found again in the crop (small faces are found better enlarged), then the photo's others
        held = [face_record(face, np.eye(3)[:2], 1.0, box_inside(face.box, (0.0, 0.0, self.size)))
                for face in self.detector.detect(sample.real)]
        for face in found:
            inside = box_inside(face.box, window)
            record = face_record(face, matrix, scale, inside)
            if inside > 0 and not any(same_face(record, other) for other in held):
                held.append(record)
        sample.meta["faces"] = {
            "detector": self.faces.detector, "side": "real", "frame": "scene", "found": len(found),
            "crop": [round(float(v), 1) for v in window], "matrix": np.round(matrix, 6).tolist(),
            "out_of_frame": round(max(1 - f["inside"] for f in held), 4), "faces": held,
        }
        return sample


def face_record(face: Face, matrix: np.ndarray, scale: float, inside: float) -> dict:
    """A face as the crop holds it: box, landmarks and inter-ocular distance in crop pixels."""
    points = transform_points(face.landmarks if face.landmarks is not None else face.keypoints5(), matrix)
    return {
        "box": [round(float(v), 1) for v in transform_points(face.box.reshape(2, 2), matrix).ravel()],
        "score": round(float(face.score), 4), "inside": round(inside, 4),
        "scheme": face.scheme if face.landmarks is not None else "keypoints5",
        "iod": round(face_iod(face) * scale, 2), "landmarks": np.round(points, 2).tolist(),
    }


def same_face(a: dict, b: dict) -> bool:
    """Whether two recorded faces are one: centres closer than half the smaller box side."""
    centre = lambda face: (np.asarray(face["box"][:2]) + np.asarray(face["box"][2:])) / 2
    side = min(np.sqrt(np.prod(np.subtract(f["box"][2:], f["box"][:2]))) for f in (a, b))
    return bool(np.linalg.norm(centre(a) - centre(b)) < 0.5 * side)


def face_iod(face: Face) -> float:
    """The distance between the eyes, in image pixels."""
    if face.landmarks is None:
        return face.size * IOD_PER_BOX
    left, right = face.keypoints5()[:2]
    return float(np.linalg.norm(right - left))


def crop_window(shape: tuple[int, ...], box: np.ndarray, side: float, size: int,
                rng: np.random.Generator) -> tuple[float, float, float]:
    """(x0, y0, side) of a square inside the photo holding ``box`` where it can, placed at random.

    The side is kept within the photo's short side and at least half of ``size`` (no more than a 2×
    enlargement) where the photo allows.
    """
    height, width = shape[:2]
    short = float(min(height, width))
    side = float(np.clip(side, min(short, size / 2), short))
    origin = []
    for low_edge, high_edge, extent in ((box[0], box[2], width), (box[1], box[3], height)):
        low, high = max(0.0, high_edge - side), min(extent - side, low_edge)
        if low > high:  # the face is larger than the window: centre on it
            low = high = float(np.clip((low_edge + high_edge - side) / 2, 0, extent - side))
        origin.append(float(rng.uniform(low, high)) if high > low else float(low))
    return origin[0], origin[1], side


def box_inside(box: np.ndarray, window: tuple[float, float, float]) -> float:
    """The share of ``box``'s area inside the square ``window`` (x0, y0, side)."""
    x0, y0, side = window
    w = max(0.0, min(box[2], x0 + side) - max(box[0], x0))
    h = max(0.0, min(box[3], y0 + side) - max(box[1], y0))
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
    return float(w * h / area)


# ---------------------------------------------------------------- face paste, skin, seams


def hull_mask(shape: tuple[int, ...], points: np.ndarray, grow: float) -> np.ndarray:
    """The convex hull of ``points`` grown by ``grow`` pixels (uint8 0/1)."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    if grow >= 1:
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(2 * grow),) * 2))
    return mask


def blend_two_bands(scene: np.ndarray, face: np.ndarray, alpha: np.ndarray, sigma: float) -> np.ndarray:
    """``face`` over ``scene``: fine detail through ``alpha``, colours below ``sigma`` through a wider mask,
    so the face's and the scene's tones meet gradually (no edge of the paste shows)."""
    scene, face = scene.astype(np.float32), face.astype(np.float32)
    low_scene, low_face = cv2.GaussianBlur(scene, (0, 0), sigma), cv2.GaussianBlur(face, (0, 0), sigma)
    wide = np.maximum(cv2.GaussianBlur(alpha, (0, 0), sigma), alpha)[..., None]
    fine = alpha[..., None]
    out = wide * low_face + (1 - wide) * low_scene + fine * (face - low_face) + (1 - fine) * (scene - low_scene)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def seam_energy(image: np.ndarray, mask: np.ndarray, band: float) -> float | None:
    """Mean gradient magnitude along ``mask``'s boundary over the same in a band ``band`` pixels wide just
    inside it (1: the boundary is as busy as the picture next to it; a pasted box edge scores far higher).

    The image's outermost 2 pixels are left out (a mask cut by the frame has no seam there).
    None when the boundary or the band is empty.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gradient = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))
    ring = np.ones((3, 3), np.uint8)
    boundary = cv2.dilate(mask, ring) - cv2.erode(mask, ring)
    inner = cv2.erode(mask, ring, iterations=2)
    inside = inner - cv2.erode(inner, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(2 * band),) * 2))
    frame = np.zeros(mask.shape, np.uint8)
    frame[2:-2, 2:-2] = 1
    boundary, inside = boundary & frame, inside & frame
    if boundary.sum() < 8 or inside.sum() < 8:
        return None
    return float(gradient[boundary > 0].mean() / max(float(gradient[inside > 0].mean()), 1.0))


def skin_core(shape: tuple[int, ...], points: np.ndarray, scheme: str) -> np.ndarray:
    """The face's bare skin as a bool mask (:func:`bare_face` for a 478-point mesh; the middle of the
    landmarks' box for other faces)."""
    if scheme == "mediapipe478":
        return bare_face(shape, FaceFrame(points))
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    mask = np.zeros(shape[:2], bool)
    mask[int(y0 + (y1 - y0) * 0.45):int(y1), int(x0 + (x1 - x0) * 0.25):int(x1 - (x1 - x0) * 0.25) + 1] = True
    return mask


class SkinModel:
    """A face's skin colour: its median Lab and spreads (lightness counts 2.5× looser: shading; chroma
    spreads at most ``MAX_CHROMA_SPREAD``, so a shadowed, noisy face does not take in grey clothes)."""

    def __init__(self, lab: np.ndarray, region: np.ndarray):
        pixels = lab[region]
        self.median = np.median(pixels, 0)
        spread = (np.percentile(pixels, 84, 0) - np.percentile(pixels, 16, 0)) / 2
        spread = np.clip(spread, [6.0, 2.5, 2.5], [np.inf, MAX_CHROMA_SPREAD, MAX_CHROMA_SPREAD])
        self.spread = spread.astype(np.float32) * np.array([2.5, 1.0, 1.0], np.float32)

    def distance(self, lab: np.ndarray) -> np.ndarray:
        """Distance of every pixel from the skin colour, in spreads; a pixel with less than half the
        skin's chroma (grey, whatever its lightness) is never near."""
        distance = np.sqrt((((lab - self.median) / self.spread) ** 2).sum(-1))
        chroma = np.hypot(lab[..., 1], lab[..., 2])
        return np.where(chroma < 0.5 * np.hypot(*self.median[1:]), np.inf, distance)


def body_skin(lab: np.ndarray, person: np.ndarray, model: SkinModel, limit: float, faces: np.ndarray,
              iod: float) -> np.ndarray:
    """Skin beyond the faces (neck, arms, hands) of the person: ``person`` ∩ colours near ``model`` (uint8 0/1)."""
    skin = ((model.distance(lab) < limit) & (person > 0) & (faces == 0)).astype(np.uint8)
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(iod * 0.1),) * 2))
    skin = cv2.morphologyEx(skin, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (odd(iod * 0.3),) * 2))
    return remove_specks(skin & (person > 0) & (faces == 0), iod ** 2 * 0.05, 0)


def carry_skin(toon: np.ndarray, skin: np.ndarray, tone: np.ndarray, shadow: float = 12.0) -> np.ndarray:
    """``toon`` with the ``skin`` region redrawn in the Lab ``tone``: flat, with one cel shadow (``shadow``
    darker) where the drawing is darker than its skin's median (the body's own shading)."""
    if not skin.any():
        return toon
    lightness = to_lab(toon)[..., 0]
    region = skin > 0
    dark = (lightness < np.median(lightness[region]) - 8).astype(np.uint8) & skin
    dark = cv2.medianBlur(dark, 5)
    colour = np.where(dark[..., None] > 0, tone - np.array([shadow, -0.2 * shadow, -0.1 * shadow], np.float32), tone)
    alpha = cv2.GaussianBlur(skin.astype(np.float32), (0, 0), 0.8)[..., None]
    out = toon.astype(np.float32) * (1 - alpha) + to_rgb(colour.astype(np.float32)) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def median_delta_e(lab: np.ndarray, region: np.ndarray, tone: np.ndarray) -> float | None:
    """Median CIEDE2000 between the Lab ``tone`` and the pixels of ``region`` (None when it is empty)."""
    from skimage.color import deltaE_ciede2000

    if region.sum() < 10:
        return None
    return float(np.median(deltaE_ciede2000(np.broadcast_to(tone, lab[region].shape), lab[region])))


class SceneTeacherStage(Stage):
    """Draws the toon side of a scene pair: the scene, the body's skin, then every face pasted in."""

    name = "teacher"

    def __init__(self, config: SceneConfig, scene_teacher, face_teacher, faces: FacesConfig):
        self.config = config
        self.scene_teacher = scene_teacher
        self.face_teacher = face_teacher
        self.margin = faces.margin

    def process(self, sample: Sample) -> Sample:
        real = sample.real
        toon, scene_record = drawing(self.scene_teacher, real, sample)
        person = sample.mask if sample.mask is not None else np.full(real.shape[:2], 255, np.uint8)
        faces = (sample.meta.get("faces") or {}).get("faces", [])
        drawn = [self._draw_face(sample, n, face) for n, face in enumerate(faces)]
        hulls = [hull_mask(real.shape, np.asarray(f["landmarks"]), self.config.hull_grow * f["iod"]) for f in faces]
        records = []
        if self.config.skin:
            toon, records = self._carry_skin(real, toon, person, faces, drawn, hulls)
        before = toon
        seams = []
        for face, (picture, _), hull in zip(faces, drawn, hulls):
            alpha = cv2.GaussianBlur(hull.astype(np.float32), (0, 0), max(0.5, self.config.feather * face["iod"]))
            toon = blend_two_bands(toon, picture, alpha, max(1.0, face["iod"] * 0.5))
        for face, hull in zip(faces, hulls):
            band = max(3.0, 0.15 * face["iod"])
            seams.append({"seam": _rounded(seam_energy(toon, hull, band)),
                          "seam_scene": _rounded(seam_energy(before, hull, band))})
        if self.config.skin:
            toon_lab = to_lab(toon)
            for record in records:
                record["delta_e"] = _rounded(median_delta_e(toon_lab, record.pop("region"), record.pop("tone")))
        sample.toon = toon
        sample.meta["teacher"] = {
            "scene": scene_record,
            "faces": [{**record, **seam, **({"skin": skin} if skin else {})}
                      for (_, record), seam, skin in zip(drawn, seams, records or [None] * len(faces))],
        }
        return sample

    def _draw_face(self, sample: Sample, n: int, face: dict) -> tuple[np.ndarray, dict]:
        """(the face teacher's drawing of the face's aligned crop, warped back into the scene; its provenance)."""
        size = self.config.face_size
        points = np.asarray(face["landmarks"], np.float64)
        keypoints = Face(np.asarray(face["box"]), face["score"], points, face["scheme"]).keypoints5()
        matrix = alignment_matrix(keypoints, size, self.margin)
        aligned = Sample(key=f"{sample.key}-face{n}", index=sample.index, seed=sample_seed(sample.seed, f"face{n}"),
                         real=crop(sample.real, matrix, size),
                         mask=crop(sample.mask, matrix, size, fill=0) if sample.mask is not None else None,
                         meta={"faces": {"scheme": face["scheme"], "side": "real",
                                         "landmarks": transform_points(points, matrix).tolist()}})
        picture, record = drawing(self.face_teacher, aligned.real, aligned)
        height, width = sample.real.shape[:2]
        back = cv2.warpAffine(picture, invert_matrix(matrix), (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        return back, {"teacher": record, "matrix": np.round(matrix, 6).tolist()}

    def _carry_skin(self, real, toon, person, faces, drawn, hulls) -> tuple[np.ndarray, list[dict]]:
        """The body's skin of each face's person recoloured to that face's drawn skin tone."""
        lab = to_lab(real)
        all_faces = np.max(hulls, axis=0) if hulls else np.zeros(real.shape[:2], np.uint8)
        _, people = cv2.connectedComponents((person > 127).astype(np.uint8))
        records = []
        for face, (picture, _), hull in zip(faces, drawn, hulls):
            points = np.asarray(face["landmarks"])
            core = skin_core(real.shape, points, face["scheme"]) & (hull > 0)
            if core.sum() < 10:
                records.append({"pixels": 0, "region": core, "tone": np.zeros(3, np.float32)})
                continue
            model = SkinModel(lab, core)
            tone = np.median(to_lab(picture)[core], 0)
            centre = np.clip(np.round(points.mean(0)).astype(int), 0, [real.shape[1] - 1, real.shape[0] - 1])
            label = people[centre[1], centre[0]]
            own = (people == label) if label > 0 else (person > 127)
            for limit in self.config.skin_distance * np.array([1.0, 0.7, 0.5, 0.0]):
                skin = body_skin(lab, own.astype(np.uint8), model, limit, all_faces, face["iod"])
                if skin.sum() <= MAX_BODY_SKIN * hull.sum():
                    break
            toon = carry_skin(toon, skin, tone)
            records.append({"pixels": int(skin.sum()), "distance": round(float(limit), 2), "tone": tone,
                            "region": skin > 0, "drawn_skin_lab": [round(float(v), 2) for v in tone]})
        return toon, records


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
