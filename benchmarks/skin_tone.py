"""How far does the webtoon teacher move skin tone? ITA° of photo and toon side, per person.

Usage: python benchmarks/skin_tone.py [--assets ../shared/assets] [--out /tmp/skin_tone]

Photos: the packaged portraits and every one-person photo of ``faces/deepface`` (people by its
``identities.csv``) and ``faces/face_recognition`` train/ and test/ (``edge_cases`` and photos of several
people left out; ``benchmarks/people.py`` maps photos to people). Each is aligned as the pipeline aligns
it (mediapipe mesh, 256 px) and drawn by the default ``webtoon`` teacher. ITA° = atan2(L* - 50, b*) is
read by ``factory.teachers.skin_tone.skin_ita`` on the same pixels of both sides: the cheeks and the
forehead of the photo's mesh, per-channel median Lab (so drawn lines, shadows and blush, a minority,
do not count). A person's ITA is the median over their photos. Issue 25's targets: median |ΔITA| ≤ 8°,
worst person ≤ 15°.

Writes ``--out``/contact_sheet.png: photo | toon per person, both ITA values under each pair, skin
regions outlined on the photo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from people import by_person, shared_photos  # noqa: E402
from toon_likeness import face_sample  # noqa: E402

from factory.sources.folders import packaged_portraits  # noqa: E402
from factory.images import read_image  # noqa: E402
from factory.teachers.skin_tone import ITA_CLASSES, ita_class, skin_ita  # noqa: E402
from factory.teachers.webtoon import WebtoonConfig  # noqa: E402
from factory.teachers.webtoon_fit import align_face  # noqa: E402
from warping.landmarks import SKIN_REGIONS  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "shared" / "assets"
TARGET_MEDIAN, TARGET_WORST = 8.0, 15.0


def load(item: str, portraits: dict[str, np.ndarray]) -> np.ndarray:
    return portraits[item] if item in portraits else read_image(item)


def measure(items: list[str]) -> list[dict]:
    """One row per photo with a face: item, person, crop, toon, points, real ITA, toon ITA."""
    portraits = packaged_portraits()
    teacher = WebtoonConfig(kind="webtoon").build()
    rows = []
    for person, group in by_person(items).items():
        for item in group:
            aligned = align_face(load(item, portraits))
            if aligned is None:
                print(f"no face: {item}", file=sys.stderr)
                continue
            crop, points = aligned
            name = Path(item.split(":")[-1]).name
            toon = teacher.draw(crop, face_sample(name, crop, points, len(rows)))[0]
            rows.append({"item": item, "name": name, "person": person, "crop": crop, "toon": toon, "points": points,
                         "real": skin_ita(crop, points), "toon_ita": skin_ita(toon, points)})
    return rows


def per_person(rows: list[dict]) -> list[dict]:
    people = {}
    for row in rows:
        people.setdefault(row["person"], []).append(row)
    out = []
    for person, group in people.items():
        real = float(np.median([r["real"] for r in group]))
        toon = float(np.median([r["toon_ita"] for r in group]))
        out.append({"person": person, "photos": len(group), "real": real, "toon": toon, "delta": toon - real,
                    "class": ita_class(real), "toon_class": ita_class(toon), "rows": group})
    return sorted(out, key=lambda p: -p["real"])


def table(people: list[dict]) -> str:
    lines = ["| person | photos | ITA° photo | class | ITA° toon | toon class | ΔITA° |",
             "|---|---:|---:|---|---:|---|---:|"]
    lines += [f"| {p['person']} | {p['photos']} | {p['real']:.1f} | {p['class']} | {p['toon']:.1f} | {p['toon_class']} "
              f"| {p['delta']:+.1f} |" for p in people]
    lines += ["", "| photo class | people | median \\|ΔITA°\\| | worst \\|ΔITA°\\| |", "|---|---:|---:|---:|"]
    for name, _ in ITA_CLASSES:
        deltas = [abs(p["delta"]) for p in people if p["class"] == name]
        lines.append(f"| {name} | {len(deltas)} | " + (f"{np.median(deltas):.1f} | {max(deltas):.1f} |" if deltas
                                                       else "– | – |"))
    deltas = np.abs([p["delta"] for p in people])
    worst = people[int(np.argmax(deltas))]
    lines.append(f"| **all** | {len(people)} | {np.median(deltas):.1f} | {deltas.max():.1f} ({worst['person']}) |")
    lines += ["", f"target median |ΔITA| ≤ {TARGET_MEDIAN:.0f}°: {'met' if np.median(deltas) <= TARGET_MEDIAN else 'NOT met'}"
              f" ({np.median(deltas):.1f}°); worst person ≤ {TARGET_WORST:.0f}°: "
              f"{'met' if deltas.max() <= TARGET_WORST else 'NOT met'} ({deltas.max():.1f}°, {worst['person']})"]
    return "\n".join(lines)


def caption(image: np.ndarray, lines: list[str]) -> np.ndarray:
    strip = np.full((18 * len(lines) + 4, image.shape[1], 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(strip, text, (4, 15 + 18 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([image, strip])


def contact_sheet(people: list[dict], path: Path, columns: int = 4) -> Path:
    """photo | toon for each person's first photo (lightest skin first), regions outlined on the photo."""
    tiles = []
    for p in people:
        row = p["rows"][0]
        photo = row["crop"].copy()
        for indices in SKIN_REGIONS.values():
            hull = cv2.convexHull(np.round(row["points"][list(indices)]).astype(np.int32))
            cv2.polylines(photo, [hull], True, (0, 255, 0), 1, cv2.LINE_AA)
        pair = np.hstack([photo, row["toon"]])
        tiles.append(caption(pair, [f"{p['person']} ({row['name']})"[:40],
                                    f"photo {row['real']:.0f}  toon {row['toon_ita']:.0f}  (person d {p['delta']:+.0f})"]))
    return write_grid(tiles, path, columns)


def write_grid(tiles: list[np.ndarray], path: Path, columns: int) -> Path:
    """RGB tiles of one size as a PNG grid, ``columns`` wide, the last row filled with white."""
    tiles = tiles + [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    sheet = np.vstack([np.hstack(tiles[i:i + columns]) for i in range(0, len(tiles), columns)])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--out", type=Path, default=Path("/tmp/skin_tone"))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    rows = measure(shared_photos(args.assets))
    people = per_person(rows)
    print(f"{len(rows)} photos of {len(people)} people, default webtoon teacher, 256 px aligned crops\n")
    print(table(people))
    print(f"\nwrote {contact_sheet(people, args.out / 'contact_sheet.png')}")


if __name__ == "__main__":
    main()
