"""Things faces carry: does the webtoon teacher draw glasses, beards, hair and skin in coloured light as they are?

Usage: python benchmarks/teacher_things.py [--assets ../shared/assets] [--out /tmp/teacher_things] [--quickstart 1]

The photos of ``skin_tone.py`` (packaged portraits, one-person photos of ``faces/deepface`` and
``faces/face_recognition``), aligned as the pipeline aligns them (256 px) and drawn by the default
teacher. Labels below were made by looking at every photo (issue 25 item 3).

- **glasses**: the teacher's ``glasses`` provenance on photos labelled with glasses (detection) and
  on all others (false frames).
- **hair colour**: median per-pixel CIEDE2000, photo vs toon, over a teacher-independent hair probe:
  the selfie mask's person above the eyes, 0.45 to 0.9 eye distances outside the face mesh's oval (the
  mesh stops mid-forehead). Median per person, then
  over people. Photos of a hat or a bald head are left out. Measured twice: on the aligned crop, and on the
  pairs the quickstart recipe makes of the same photo (``--quickstart`` draws each: its wider, jittered crop,
  the warp before the teacher, the augmentation on both sides), where the selfie mask takes in more
  background; the worst photos are listed (a person's median hides one bad photo among good ones).
- **hair drawn as skin**: share of that probe the teacher classified as skin, on blonde and grey hair; and of
  the probe's pixels grey as grey hair is (CIELAB chroma under 0.6 of the face's: the probe also reaches a high
  bare forehead, Biden's, whose pixels have the face's chroma).
- **beards**: share of the lower face (inside the oval below the nose, lips left out) the teacher
  drew as beard, on bearded and on clean-shaven men and women; CIEDE2000 between the drawn beard's
  and the drawn hair's median colours.
- **coloured light**: each person's first photo under a blue, a green and a magenta light (RGB
  gains), plus the two real photos in coloured light; ITA° of the toon against the untinted photo's,
  and the share of toons whose skin is grey (CIELAB chroma < 8) or off skin hue (hue angle outside
  20°-90°).

Writes ``--out``/teacher_things.jpg: photo | toon for the labelled cases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from skimage.color import deltaE_ciede2000

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cel_shapes import masked_samples  # noqa: E402
from people import person_of, shared_photos  # noqa: E402
from skin_tone import ASSETS, caption, write_grid  # noqa: E402

from factory.stages.segment import MediapipeMasker  # noqa: E402
from factory.teachers.skin_tone import median_lab, skin_ita, skin_mask, to_lab  # noqa: E402
from factory.teachers.webtoon import FaceFrame, WebtoonConfig, polygon_mask, read_regions  # noqa: E402
from warping.landmarks import FACE_OVAL, LIPS_OUTER  # noqa: E402

# Labels by looking (names: the packaged portrait's item, else the file's path under faces/).
GLASSES = {"matplotlib:grace_hopper", "deepface/img24.jpg", "deepface/img25.jpg"}
BEARD = {"deepface/img16.jpg", "deepface/img17.jpg", "deepface/img59.jpg", "deepface/img61.jpg", "deepface/img62.jpg",
         "deepface/img24.jpg", "deepface/img25.jpg", "deepface/img35.jpg", "deepface/img36.jpg", "deepface/img37.jpg",
         "deepface/img40.jpg", "face_recognition/train/alex_lacamoire/img1.jpg",
         "face_recognition/test/alex_lacamoire1.jpg", "face_recognition/train/kit_harington/john1.jpeg",
         "face_recognition/train/kit_harington/john2.jpeg", "face_recognition/test/johnsnow_test1.jpg"}
STUBBLE = {"deepface/img34.jpg"}
CLEAN_SHAVEN_MEN = {"barack_obama", "joe_biden", "obama", "biden", "person04", "person09", "person10", "person06"}
BLONDE = {f"deepface/img{n}.jpg" for n in (22, 23, 26, 27, 28, 48, 49, 9, 12, 3, 53, 54, 55, 56)}
GREY = {f"deepface/img{n}.jpg" for n in (38, 39, 40, 41)} | {
    "toonfactory:joe-biden.jpg", "face_recognition/train/biden/biden.jpg", "face_recognition/train/biden/biden2.jpg"}
NO_HAIR_PROBE = {"matplotlib:grace_hopper", "deepface/img20.jpg", "deepface/img21.jpg"}  # a hat; bald
IN_COLOURED_LIGHT = {"deepface/img27.jpg", "deepface/img67.jpg"}
LIGHTS = {"blue": (0.75, 0.9, 1.3), "green": (0.85, 1.15, 0.8), "magenta": (1.15, 0.8, 1.2)}
QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
GREY_CHROMA, SKIN_HUES = 8.0, (20.0, 90.0)
GREY_HAIR_CHROMA = 0.6
BEARD_DRAWN = 0.1


def label(item: str) -> str:
    """An item's name in the labels: a packaged portrait's item, else its path under ``faces/``."""
    parts = Path(item).parts
    return item if ":" in item else "/".join(parts[parts.index("faces") + 1:])


def hair_probe(shape, points: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Where hair is on a person with hair: around the top of the head, outside the face oval (bool)."""
    face = FaceFrame(points)
    oval = (polygon_mask(shape, points[FACE_OVAL]) > 0.5).astype(np.uint8)
    distance = cv2.distanceTransform(1 - oval, cv2.DIST_L2, 3)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    eyes = (points[468] + points[473]) / 2
    above = (xs - eyes[0]) * face.up[0] + (ys - eyes[1]) * face.up[1] > 0
    return (person > 0.5) & above & (distance > face.iod * 0.45) & (distance < face.iod * 0.9)


def lower_face(shape, points: np.ndarray) -> np.ndarray:
    """Inside the oval, below the nose tip, lips left out (bool)."""
    face = FaceFrame(points)
    oval = polygon_mask(shape, points[FACE_OVAL]) > 0.5
    lips = cv2.dilate((polygon_mask(shape, points[LIPS_OUTER]) > 0.5).astype(np.uint8),
                      np.ones((int(face.iod * 0.15) | 1,) * 2, np.uint8)) > 0
    return oval & ~face.above(shape, 2) & ~lips


def delta_e(lab_a, lab_b) -> float:
    return float(deltaE_ciede2000(np.asarray(lab_a, np.float64), np.asarray(lab_b, np.float64)))


def skin_hue_chroma(rgb: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """(hue angle in degrees, chroma) of the median skin colour over the ITA regions."""
    _, a, b = median_lab(rgb, skin_mask(rgb.shape, points))
    return float(np.degrees(np.arctan2(b, a))), float(np.hypot(a, b))


def tint(rgb: np.ndarray, gains) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


def measure(items: list[str]) -> list[dict]:
    """One row per photo with a face: label, person, crop, toon, provenance and the measures above."""
    teacher = WebtoonConfig(kind="webtoon").build()
    rows = []
    for item, crop, points, sample in masked_samples(items):
        name = label(item)
        person = sample.mask.astype(np.float32) / 255.0
        toon, meta = teacher.draw(crop, sample)
        regions = read_regions(crop, points, person)
        row = {"label": name, "person": person_of(item), "crop": crop, "toon": toon, "points": points,
               "glasses": bool(meta.get("glasses")), "sample": sample}
        probe = hair_probe(crop.shape, points, person)
        if name not in NO_HAIR_PROBE and probe.sum() > 50:
            row["hair_de"] = float(np.median(deltaE_ciede2000(to_lab(crop)[probe], to_lab(toon)[probe])))
            row["hair_as_skin"] = float((regions.skin[probe] > 0).mean())
            # The probe assumes hair 0.45 eye distances above the oval; a high bare forehead (Biden's) reaches it.
            # Its pixels grey as grey hair is (chroma under GREY_HAIR_CHROMA of the face's) are hair by colour.
            lab = to_lab(crop)
            greyish = probe & (np.hypot(lab[..., 1], lab[..., 2]) < GREY_HAIR_CHROMA * np.hypot(*regions.person_skin[1:]))
            if greyish.sum() > 50:
                row["grey_as_skin"] = float((regions.skin[greyish] > 0).mean())
        lower = lower_face(crop.shape, points)
        row["beard_share"] = float((regions.beard[lower] > 0).mean())
        if regions.beard.sum() > 20 and regions.hair.sum() > 20:
            row["beard_hair_de"] = delta_e(median_lab(toon, regions.beard > 0), median_lab(toon, regions.hair > 0))
        rows.append(row)
    return rows


def quickstart_pairs(items: list[str], draws: int):
    """(item, real, toon, landmarks) of ``draws`` pairs per photo made by the quickstart recipe's stages, gates left
    out: its crop (margin, jitter), the warp before the teacher, the default teacher, the augmentation."""
    from factory.pipeline import build_pipeline
    from factory.sample import Sample
    from factory.images import DEFAULT_MAX_PIXELS
    from factory.sources.folders import ImageSource
    from factory.stages.gates import GateStage
    from toonfactory.recipe import load

    recipe = load(QUICKSTART, []).recipe
    stages = [stage for stage in build_pipeline(recipe).stages if not isinstance(stage, GateStage)]
    files = [item for item in items if ":" not in item]
    source = ImageSource([Path(f) for f in files], "real", DEFAULT_MAX_PIXELS, packaged=True)
    for draw in range(draws):
        for position, item in enumerate(source.items):
            if item not in items:
                continue
            sample = source.load(Sample.create(f"{draw:05d}_{position:06d}", position, recipe.seed), position)
            stream = iter([sample])
            for stage in stages:
                stream = stage(stream)
            for made in stream:
                if made.reject_reason is None and made.toon is not None:
                    yield item, made.real, made.toon, np.asarray(made.meta["faces"]["landmarks"], np.float64)


def measure_quickstart(items: list[str], draws: int) -> list[dict]:
    """Hair CIEDE2000 (the probe above) on the quickstart's pairs: one row per pair."""
    masker = MediapipeMasker()
    rows = []
    for item, real, toon, points in quickstart_pairs(items, draws):
        name = label(item)
        probe = hair_probe(real.shape, points, masker(real))
        if name not in NO_HAIR_PROBE and probe.sum() > 50:
            rows.append({"label": name, "person": person_of(item), "crop": real, "toon": toon,
                         "hair_de": float(np.median(deltaE_ciede2000(to_lab(real)[probe], to_lab(toon)[probe])))})
    return rows


def hair_table(rows: list[dict], quickstart: list[dict]) -> list[str]:
    """Hair CIEDE2000 per person (aligned crops, quickstart pairs), over people, and the worst photos."""
    def per_person(group):
        people = {}
        for r in group:
            if "hair_de" in r:
                people.setdefault(r["person"], []).append(r["hair_de"])
        return {p: float(np.median(v)) for p, v in people.items()}, people

    aligned, counts = per_person(rows)
    drawn, drawn_counts = per_person(quickstart)
    lines = ["", "| person | photos | hair CIEDE2000 (median), aligned crop | quickstart pairs (median) |",
             "|---|---:|---:|---:|"]
    for p in sorted(set(aligned) | set(drawn)):
        cells = [f"{d[p]:.1f}" if p in d else "–" for d in (aligned, drawn)]
        lines.append(f"| {p} | {len(counts.get(p, []))} | {cells[0]} | {cells[1]} |")
    summary = [f"{np.median(list(d.values())):.1f} (worst {max(d.values()):.1f})" if d else "–" for d in (aligned, drawn)]
    lines.append(f"| **all** | {sum(map(len, counts.values()))} | {summary[0]} | {summary[1]} |")
    for name, group in (("aligned crop", rows), ("quickstart pairs", quickstart)):
        worst = sorted((r for r in group if "hair_de" in r), key=lambda r: -r["hair_de"])[:5]
        if worst:
            lines.append(f"\nWorst photos, {name}: " + ", ".join(f"{r['label'].split('/')[-1]} {r['hair_de']:.1f}"
                                                             for r in worst))
    return lines


def coloured_light(rows: list[dict]) -> list[dict]:
    """Toon ITA° and skin hue of each person's first photo under each light, against the untinted photo."""
    teacher = WebtoonConfig(kind="webtoon").build()
    firsts = {}
    for row in rows:
        firsts.setdefault(row["person"], row)
    out = []
    for light, gains in LIGHTS.items():
        for row in firsts.values():
            sample = row["sample"]
            sample.real = tint(row["crop"], gains)
            toon = teacher.draw(sample.real, sample)[0]
            out.append({"light": light, "label": row["label"], "tinted": sample.real, "toon": toon,
                        "photo_ita": skin_ita(row["crop"], row["points"]), "toon_ita": skin_ita(toon, row["points"]),
                        "hue_chroma": skin_hue_chroma(toon, row["points"])})
            sample.real = row["crop"]
    for row in rows:
        if row["label"] in IN_COLOURED_LIGHT:
            out.append({"light": "real", "label": row["label"], "tinted": row["crop"], "toon": row["toon"],
                        "photo_ita": skin_ita(row["crop"], row["points"]), "toon_ita": skin_ita(row["toon"], row["points"]),
                        "hue_chroma": skin_hue_chroma(row["toon"], row["points"])})
    return out


def off_skin(hue_chroma: tuple[float, float]) -> bool:
    hue, chroma = hue_chroma
    return chroma < GREY_CHROMA or not SKIN_HUES[0] <= hue <= SKIN_HUES[1]


def table(rows: list[dict], lit: list[dict], quickstart: list[dict]) -> str:
    found = [r for r in rows if r["label"] in GLASSES]
    false = [r["label"] for r in rows if r["label"] not in GLASSES and r["glasses"]]
    lines = ["| glasses | photos | frames drawn |", "|---|---:|---:|",
             f"| labelled with glasses | {len(found)} | {sum(r['glasses'] for r in found)} "
             f"({np.mean([r['glasses'] for r in found]):.0%}) |",
             f"| without | {len(rows) - len(found)} | {len(false)}" + (f" ({', '.join(false)})" if false else "") + " |"]
    lines += hair_table(rows, quickstart)
    lines += ["", "| hair | photos | probe drawn as skin: median / worst | probe's grey pixels (chroma < "
              f"{GREY_HAIR_CHROMA} of the face's) drawn as skin: median / worst |", "|---|---:|---:|---:|"]
    for name, labels in (("blonde", BLONDE), ("grey", GREY)):
        shares = [r["hair_as_skin"] for r in rows if r["label"] in labels and "hair_as_skin" in r]
        worst = max((r for r in rows if r["label"] in labels and "hair_as_skin" in r), key=lambda r: r["hair_as_skin"])
        grey = [r["grey_as_skin"] for r in rows if r["label"] in labels and "grey_as_skin" in r]
        lines.append(f"| {name} | {len(shares)} | {np.median(shares):.1%} / {max(shares):.1%} "
                     f"({worst['label'].split('/')[-1]}) | "
                     + (f"{np.median(grey):.1%} / {max(grey):.1%} ({len(grey)} photos)" if grey else "–") + " |")
    lines += ["", f"| beards | photos | beard drawn (≥ {BEARD_DRAWN:.0%} of the lower face) | lower face drawn as beard: "
              "median / min / max | drawn beard vs drawn hair CIEDE2000 (median) |", "|---|---:|---:|---:|---:|"]
    groups = (("bearded", lambda r: r["label"] in BEARD), ("stubble", lambda r: r["label"] in STUBBLE),
              ("clean-shaven men", lambda r: r["person"] in CLEAN_SHAVEN_MEN),
              ("women", lambda r: r["label"] in BLONDE | {"matplotlib:grace_hopper", "skimage:astronaut"}
               or r["person"] in {"person00", "person01", "person02", "person03", "person11", "rose_leslie"}))
    for name, test in groups:
        group = [r for r in rows if test(r)]
        shares = [r["beard_share"] for r in group]
        colour = [r["beard_hair_de"] for r in group if "beard_hair_de" in r]
        drawn = [r["label"].split("/")[-1] for r in group if r["beard_share"] >= BEARD_DRAWN]
        listed = f" ({', '.join(drawn)})" if 0 < len(drawn) <= 3 else ""
        lines.append(f"| {name} | {len(group)} | {len(drawn)}{listed} | "
                     f"{np.median(shares):.0%} / {min(shares):.0%} / {max(shares):.0%} | "
                     + (f"{np.median(colour):.1f} |" if colour else "– |"))
    lines += ["", "| light | faces | median \\|ΔITA°\\| toon vs untinted photo | worst | toon skin grey or off hue |",
              "|---|---:|---:|---:|---:|"]
    for light in (*LIGHTS, "real"):
        group = [r for r in lit if r["light"] == light]
        deltas = np.abs([r["toon_ita"] - r["photo_ita"] for r in group])
        bad = [r["label"] for r in group if off_skin(r["hue_chroma"])]
        lines.append(f"| {light} | {len(group)} | {np.median(deltas):.1f} | {deltas.max():.1f} | {len(bad)}"
                     + (f" ({', '.join(bad[:4])}{'…' if len(bad) > 4 else ''})" if bad else "") + " |")
    return "\n".join(lines)


def contact_sheet(rows: list[dict], lit: list[dict], path: Path) -> Path:
    """photo | toon: glasses, beards, blonde and grey hair, coloured light (real and tinted)."""
    picks = ["matplotlib:grace_hopper", "deepface/img24.jpg", "deepface/img25.jpg", "deepface/img16.jpg",
             "deepface/img40.jpg", "face_recognition/train/kit_harington/john1.jpeg", "deepface/img28.jpg",
             "deepface/img22.jpg", "deepface/img38.jpg", "toonfactory:barack-obama.jpg", "skimage:astronaut"]
    by_label = {r["label"]: r for r in rows}
    tiles = [caption(np.hstack([by_label[p]["crop"], by_label[p]["toon"]]), [p.split("/")[-1].split(":")[-1]])
             for p in picks if p in by_label]
    for r in lit:
        if r["light"] == "real" or (r["light"] in LIGHTS and r["label"] == "toonfactory:barack-obama.jpg"):
            tiles.append(caption(np.hstack([r["tinted"], r["toon"]]), [f"{r['label'].split('/')[-1]} ({r['light']} light)"]))
    return write_grid(tiles, path, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/teacher_things"))
    parser.add_argument("--quickstart", type=int, default=1, help="pairs per photo made by the quickstart recipe (0: none)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    items = shared_photos(args.assets)
    rows = measure(items)
    lit = coloured_light(rows)
    quickstart = measure_quickstart(items, args.quickstart) if args.quickstart else []
    print(f"{len(rows)} photos, default webtoon teacher, 256 px aligned crops; {len(quickstart)} quickstart pairs\n")
    print(table(rows, lit, quickstart))
    print(f"\nwrote {contact_sheet(rows, lit, args.out / 'teacher_things.jpg')}")


if __name__ == "__main__":
    main()
