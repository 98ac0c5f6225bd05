"""Detail where webtoon art has it (issue 25 item 4): layered eyes, hair strands along the hair's flow, tapered lines.

Usage: python benchmarks/teacher_detail.py [--assets ../shared/assets] [--out /tmp/teacher_detail]

The photos of ``skin_tone.py``, aligned as the pipeline aligns them (256 px), drawn by the default teacher.
Everything is read off the drawing, or off the teacher's outline layer, with the photo's mesh:

- **eyes**: inside each drawn iris (the mesh's iris centre, radius as drawn), between the pupil and the ring
  (0.5-0.85 of the radius), ink and catch-lights left out: median Lab lightness of the lower half minus the
  upper half (a gradient: > 0), and the near-white spots (L* > 90) inside the iris (catch-lights).
- **hair strands**: dark lines of the drawing (a difference of Gaussians) inside the hair probe of
  ``teacher_things.py`` (above the eyes, 0.45-0.9 eye distances outside the mesh's oval); their share of the
  probe, and how well they run with the photo's hair: mean |cos| of the angle between each line pixel's
  direction (structure tensor of the drawing) and the photo's hair direction there (structure tensor of the
  photo over a tenth of the eye distance); 1 is along, 0.64 is what lines in random directions score; and
  their median length (each line's box diagonal, in eye distances).
- **lines**: the teacher's outline layer (``outline_mask``) at 256 px and with the photo, mesh and mask
  scaled to 512 px: width (twice the distance to the line's edge on its centre line, so whole pixels) at open
  lines' ends (within a tenth of the eye distance of an end) against their middles (over 0.3 eye distances
  from any end) at 512 px, where lines are wide enough to tell, and the middles' width at 512 against 256
  (follows the face: 2).

Writes ``--out``/teacher_detail.png: photo | toon, and the toon's eyes and hair enlarged, for 6 faces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cel_shapes import masked_samples  # noqa: E402
from people import shared_photos  # noqa: E402
from skin_tone import ASSETS, write_grid  # noqa: E402
from teacher_things import hair_probe  # noqa: E402

from factory.teachers.skin_tone import to_lab  # noqa: E402
from factory.teachers.webtoon import EYES, FaceFrame, WebtoonConfig, outline_mask, read_regions  # noqa: E402

RANDOM_COS = 2 / np.pi  # mean |cos| between uniformly random directions


def eye_layers(toon: np.ndarray, points: np.ndarray, iris_scale: float) -> list[tuple[float, int]]:
    """(lower minus upper iris lightness, catch-lights) of each drawn eye."""
    face = FaceFrame(points)
    lightness = to_lab(toon)[..., 0]
    ys, xs = np.mgrid[0:toon.shape[0], 0:toon.shape[1]].astype(np.float32)
    out = []
    for _, _, centre_index, ring in EYES:
        centre = points[centre_index]
        radius = max(float(np.linalg.norm(points[ring] - centre, axis=1).mean()) * iris_scale, face.iod * 0.06)
        dx, dy = xs - centre[0], ys - centre[1]
        r = np.hypot(dx, dy) / radius
        down = -(dx * face.up[0] + dy * face.up[1]) / radius
        painted = (r > 0.5) & (r < 0.85) & (lightness > 10) & (lightness < 85)
        lower, upper = lightness[painted & (down > 0.25)], lightness[painted & (down < -0.25)]
        gradient = float(np.median(lower) - np.median(upper)) if len(lower) > 3 and len(upper) > 3 else float("nan")
        spots = ((lightness > 90) & (r < 0.95)).astype(np.uint8)
        out.append((gradient, cv2.connectedComponents(spots)[0] - 1))
    return out


def orientation(gray: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Direction along the lines at every pixel (radians) and its coherence (0-1), from the structure tensor."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    jxx, jxy, jyy = (cv2.GaussianBlur(g, (0, 0), sigma) for g in (gx * gx, gx * gy, gy * gy))
    coherence = np.hypot(jxx - jyy, 2 * jxy) / np.maximum(jxx + jyy, 1e-9)
    return 0.5 * np.arctan2(2 * jxy, jxx - jyy) + np.pi / 2, coherence


def strands(crop: np.ndarray, toon: np.ndarray, points: np.ndarray, person: np.ndarray) -> tuple[float, float, float] | None:
    """(share of the hair probe in drawn dark lines, their mean |cos| with the photo's hair direction, the
    median length of those lines in eye distances)."""
    probe = hair_probe(crop.shape, points, person)
    if probe.sum() < 200:
        return None
    iod = FaceFrame(points).iod
    drawn = cv2.cvtColor(toon, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    lines = (cv2.GaussianBlur(drawn, (0, 0), 1.6) - cv2.GaussianBlur(drawn, (0, 0), 1.0) > 0.02) & probe
    photo_gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    hair_direction, coherence = orientation(photo_gray, iod * 0.1)
    line_direction, _ = orientation(drawn, 1.5)
    judged = lines & (coherence > 0.3)
    agreement = float(np.abs(np.cos(line_direction[judged] - hair_direction[judged])).mean()) if judged.sum() >= 20 \
        else float("nan")
    count, _, stats, _ = cv2.connectedComponentsWithStats(lines.astype(np.uint8), connectivity=8)
    extent = np.hypot(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])[stats[1:, cv2.CC_STAT_AREA] >= 5]
    length = float(np.median(extent)) / iod if len(extent) else float("nan")
    return float(lines.sum() / probe.sum()), agreement, length


def line_widths(crop: np.ndarray, points: np.ndarray, person: np.ndarray, width_share: float) -> tuple[float, float]:
    """(median width at open lines' ends, in their middles) of the teacher's outline layer, in pixels."""
    regions = read_regions(crop, points, person)
    gray = cv2.cvtColor(regions.smoothed, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    width = max(1.0, width_share * regions.face.iod)
    alpha = outline_mask(gray, regions.skin, regions.person, regions.hair | regions.beard, regions.face, width,
                         crop.shape[0] / 256.0)
    inked = (alpha > 0.5).astype(np.uint8)
    skeleton = cv2.ximgproc.thinning(inked * 255) > 0
    neighbours = cv2.filter2D(skeleton.astype(np.uint8), -1, np.ones((3, 3), np.float32), borderType=cv2.BORDER_CONSTANT)
    ends = skeleton & (neighbours == 2)
    to_end = cv2.distanceTransform((~ends).astype(np.uint8), cv2.DIST_L2, 3)
    half = cv2.distanceTransform(inked, cv2.DIST_L2, 3)
    iod = regions.face.iod
    at_ends = half[skeleton & (to_end < iod * 0.1)] * 2
    middles = half[skeleton & (to_end > iod * 0.3)] * 2
    return (float(np.median(at_ends)) if len(at_ends) else float("nan"),
            float(np.median(middles)) if len(middles) else float("nan"))


def scaled(crop: np.ndarray, points: np.ndarray, person: np.ndarray, factor: int):
    size = (crop.shape[1] * factor, crop.shape[0] * factor)
    return (cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), points * factor,
            cv2.resize(person, size, interpolation=cv2.INTER_LINEAR))


def enlarged(image: np.ndarray, centre: np.ndarray, half: int, size: int) -> np.ndarray:
    x, y = np.clip(np.round(centre).astype(int), half, np.array(image.shape[1::-1]) - half)
    return cv2.resize(image[y - half:y + half, x - half:x + half], (size, size), interpolation=cv2.INTER_NEAREST)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher_detail"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    teacher = WebtoonConfig(kind="webtoon").build()
    eyes, hair, ends, middles, growth, tiles = [], [], [], [], [], []
    for item, crop, points, sample in masked_samples(shared_photos(args.assets)):
        person = sample.mask.astype(np.float32) / 255.0
        toon, meta = teacher.draw(crop, sample)
        drawn = meta["drawn"]
        eyes += eye_layers(toon, points, drawn["iris_scale"])
        found = strands(crop, toon, points, person)
        if found is not None:
            hair.append(found)
        _, middle = line_widths(crop, points, person, drawn["line_width"])
        end_512, middle_512 = line_widths(*scaled(crop, points, person, 2), drawn["line_width"])
        ends.append(end_512 / middle_512)
        middles.append(middle)
        growth.append(middle_512 / middle)
        if len(tiles) < 6 and "deepface" in item:
            face = FaceFrame(points)
            eye = enlarged(toon, points[468], int(face.iod * 0.35), 256)
            top = enlarged(toon, (points[468] + points[473]) / 2 + face.up * face.iod * 1.2, int(face.iod * 0.6), 256)
            tiles.append(np.hstack([crop, toon, eye, top]))
    gradients = np.array([g for g, _ in eyes])
    spots = np.array([s for _, s in eyes])
    share, agreement, length = np.array(hair).T
    print(f"{len(middles)} faces, default webtoon teacher, 256 px aligned crops\n")
    print("| measure | value |\n|---|---|")
    print(f"| iris lightness, lower minus upper half: median (share of eyes > 5) | {np.nanmedian(gradients):.1f} "
          f"({np.nanmean(gradients > 5):.0%}) |")
    print(f"| catch-lights per eye: share with 2 / with 1 / with none | {np.mean(spots == 2):.0%} / {np.mean(spots == 1):.0%}"
          f" / {np.mean(spots == 0):.0%} |")
    print(f"| hair probe in drawn lines, median ({len(share)} heads) | {np.median(share):.1%} |")
    print(f"| drawn hair lines along the photo's hair, mean abs cos (random {RANDOM_COS:.2f}) | {np.nanmean(agreement):.2f} |")
    print(f"| drawn hair lines' length (box diagonal), median, eye distances | {np.nanmedian(length):.2f} |")
    print(f"| outline width at open lines' ends / in their middles, 512 px, median | {np.nanmedian(ends):.2f} |")
    print(f"| outline width in the middles, 256 px, median | {np.nanmedian(middles):.1f} px |")
    print(f"| outline width at 512 px / at 256 px, median | {np.nanmedian(growth):.2f} |")
    print(f"\nwrote {write_grid(tiles, args.out / 'teacher_detail.png', 1)}")


if __name__ == "__main__":
    main()
