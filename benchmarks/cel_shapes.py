"""Are the webtoon teacher's cel shapes clean? Shadow and lit shapes per face, their sizes and boundary curvature.

Usage: python benchmarks/cel_shapes.py [--assets ../shared/assets] [--out /tmp/cel_shapes]

The photos of ``skin_tone.py`` (packaged portraits, one-person photos of ``faces/deepface`` and
``faces/face_recognition``), aligned as the pipeline aligns them (256 px), each with the parameters the
default teacher draws for it. For every face and cel tone (the shadow, which holds the deeper shadow;
the deeper shadow; the lit tone) the tone's connected shapes (8-neighbour) are counted as *shapes* (at
least 0.5% of the face oval's area) and *specks* (smaller), and the boundaries of all shapes give a mean
absolute curvature: the turning angle over 3 px either side of each boundary pixel, per pixel, times the
inter-ocular distance (a circle of radius r measures iod / r; staircase pixels and wiggles add to it).
Issue 25 item 2's target: at most 6 shadow shapes per tone and no specks.

Writes ``--out``/cel_masks.png: toon | its cel masks (shadow red, deeper shadow dark red, lit yellow) for 12 faces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from people import shared_photos  # noqa: E402
from skin_tone import ASSETS, load, write_grid  # noqa: E402
from toon_likeness import face_sample  # noqa: E402

from factory.sources.folders import packaged_portraits  # noqa: E402
from factory.stages.segment import MediapipeMasker  # noqa: E402
from factory.teachers.webtoon import WebtoonConfig, cel_shading, polygon_mask, read_regions  # noqa: E402
from factory.teachers.webtoon_fit import align_face  # noqa: E402
from warping.landmarks import FACE_OVAL  # noqa: E402

SHAPE_SHARE = 0.005  # of the face oval's area
MAX_SHAPES = 6
TONES = ("shadow", "deeper shadow", "lit")


def shapes_and_specks(mask: np.ndarray, face_area: float) -> tuple[int, int]:
    """(shapes of at least SHAPE_SHARE of the face, smaller specks) of a binary mask."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    large = stats[1:, cv2.CC_STAT_AREA] >= SHAPE_SHARE * face_area
    return int(large.sum()), int((~large).sum())


def boundary_turns(mask: np.ndarray, arc: int = 3) -> np.ndarray:
    """Absolute turning angle per pixel (radians) at every boundary pixel of the mask's shapes."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    turns = []
    for contour in contours:
        points = contour[:, 0].astype(np.float64)
        if len(points) < 4 * arc:
            continue
        back = points - np.roll(points, arc, 0)
        ahead = np.roll(points, -arc, 0) - points
        angle = np.arctan2(back[:, 0] * ahead[:, 1] - back[:, 1] * ahead[:, 0], (back * ahead).sum(1))
        turns.append(np.abs(angle) / (2 * arc))
    return np.concatenate(turns) if turns else np.zeros(0)


def masked_samples(items: list[str]):
    """(item, crop, points, sample) for each item with a face: aligned as the pipeline aligns it (256 px), the
    sample carrying the mesh and the selfie mask, numbered in order."""
    portraits = packaged_portraits()
    masker = MediapipeMasker()
    index = 0
    for item in items:
        aligned = align_face(load(item, portraits))
        if aligned is None:
            continue
        crop, points = aligned
        sample = face_sample(Path(item.split(":")[-1]).name, crop, points, index)
        sample.mask = (masker(crop) * 255).astype(np.uint8)
        index += 1
        yield item, crop, points, sample


def measure(items: list[str]) -> list[dict]:
    """One row per photo with a face: the toon, its cel masks, and per tone its shapes, specks and curvature."""
    teacher = WebtoonConfig(kind="webtoon").build()
    rows = []
    for _, crop, points, sample in masked_samples(items):
        params = teacher.draw_parameters(sample.rng("teacher"))
        regions = read_regions(crop, points, sample.mask.astype(np.float32) / 255.0)
        shadows, lit = cel_shading(regions.photo_lab, regions.lab[..., 0], regions.skin, regions.face, params)
        masks = [shade > 0.5 for shade in shadows] + [np.zeros(crop.shape[:2], bool)] * (2 - len(shadows)) + [lit > 0.5]
        face_area = float((polygon_mask(crop.shape, points[FACE_OVAL]) > 0.5).sum())
        row = {"name": sample.key, "toon": teacher.draw(crop, sample)[0], "masks": masks}
        for tone, mask in zip(TONES, masks):
            row[tone] = (*shapes_and_specks(mask, face_area), boundary_turns(mask) * regions.face.iod)
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| tone | faces | shapes per face: median / max | specks per face: median / max | faces with specks "
             "| mean boundary curvature (× iod) |", "|---|---:|---:|---:|---:|---:|"]
    for tone in TONES:
        shapes = [r[tone][0] for r in rows]
        specks = [r[tone][1] for r in rows]
        turns = np.concatenate([r[tone][2] for r in rows])
        lines.append(f"| {tone} | {len(rows)} | {np.median(shapes):.0f} / {max(shapes)} | {np.median(specks):.0f} / "
                     f"{max(specks)} | {np.mean(np.array(specks) > 0):.0%} | {turns.mean():.2f} |")
    clean = [all(r[t][0] <= MAX_SHAPES and r[t][1] == 0 for t in TONES[:2]) for r in rows]
    lines += ["", f"faces meeting the target (each shadow tone: ≤ {MAX_SHAPES} shapes of ≥ {SHAPE_SHARE:.1%} of the "
              f"face, no specks): {sum(clean)} of {len(rows)} ({np.mean(clean):.0%})"]
    return "\n".join(lines)


def mask_sheet(rows: list[dict], path: Path, count: int = 12, columns: int = 3) -> Path:
    tiles = []
    for row in rows[:: max(1, len(rows) // count)][:count]:
        view = np.full_like(row["toon"], 255)
        for mask, colour in zip(row["masks"], ((230, 90, 90), (140, 20, 20), (250, 220, 80))):
            view[mask] = colour
        tiles.append(np.hstack([row["toon"], view]))
    return write_grid(tiles, path, columns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/cel_shapes"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = measure(shared_photos(args.assets))
    print(f"{len(rows)} faces, default webtoon teacher, 256 px aligned crops\n")
    print(table(rows))
    print(f"\nwrote {mask_sheet(rows, args.out / 'cel_masks.png')}")


if __name__ == "__main__":
    main()
