"""Does the student reproduce its teacher on people it never saw? Any recipe's pairs, split by person.

The photos are the shipped portraits and ``../shared/assets/faces`` (deepface, face_recognition), one
person each (``people.py``). People, not pairs, are split into training and held-out ones (seeded),
so no person is on both sides. Each side gets a folder of its people's photos, and the recipe
(``--recipe``, the quickstart's `webtoon` teacher by default; ``--set`` overrides as in the CLI)
makes pairs from it through the real factory: its faces, warp, teacher, augment and gates sections,
``output.size``, with ``output.count`` = photos x ``--per-photo``. Its ``distill:`` section (the
quickstart's when the recipe has none) trains the student on the training pairs.

Every held-out pair is scored at ``distill.size``, as training sees it. One Markdown table: the
student (EMA), the input as output (identity baseline) and the target (the teacher's drawing, or
the photo for a toon2real student). Columns: PSNR and SSIM vs the target; the share called webtoon
by the judge of ``toon_likeness.py`` (trained on the shared webtoon characters vs the photos of every
person not held out: it never saw a held-out person); dlib identity cosine vs the photo, with the share
above dlib's same-person threshold (0.82); the student's median ms per image (batch 1, CPU, torch
threads as set; the best one beside it, as other work on a shared machine slows some); training
steps and minutes; when training shrinks the pairs, the judge's share of the target at the pairs' own
size beside it (a sharp 128 px drawing already reads less like webtoon than at 256). A second table
says where the error lies: mean L1 against the target in the target's ink lines, the face (mesh
oval), hair and body (the rest of the person mask) and the background, student beside identity.
Writes ``--out/heldout_grid.png``: one column per held-out person (8 at most), rows input / target / student.
``--train-people`` trains on only some of the people not held out and ``--train-pairs`` fixes the number of
training pairs: a curve of held-out quality against the number of people, the held-out pairs and the judge the same.

    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq                      # webtoon teacher
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq --set distill.steps=2000
    # make demo's student on the 16 people it never saw (no training):
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq-demo --student out/quickstart/student/checkpoints/step_0001500
    # a data-scaling point: 200 training pairs of 5 of the 13 people not held out (the same 8 held out)
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq-scale --train-people 5 --train-pairs 200
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq-cartoongan --recipe recipes/cartoongan.yaml
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/dq-cartoonize --set teacher.kind=cartoonize
    # a toon2real student for casting (cast rank --realify, cast_accuracy.py --realifier), never on deepface people:
    .venv/bin/python benchmarks/distill_quality.py --out /tmp/realify --recipe recipes/realify-webtoon.yaml \\
        --sources samples,face_recognition --export /tmp/realify/onnx
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from people import SOURCES, by_person, person_of, shared_photos, split_people, training_people

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
GRID_PEOPLE = 8
SAME_PERSON = 0.82  # dlib's rule: distance < 0.6


def load_recipe(path: Path, overrides: list[str]):
    """The whole-run recipe with ``--set`` overrides; one without ``distill:`` trains as the quickstart does."""
    from factory.config import read_yaml
    from toonfactory.recipe import load

    if "distill" not in read_yaml(path):
        overrides = [f"distill={json.dumps(read_yaml(QUICKSTART)['distill'])}", *overrides]
    return load(path, overrides)


def photo_folder(root: Path, split: str, groups: dict[str, list[str]]) -> Path:
    """One split's photos, a sub-folder per person (links to the files, packaged portraits written as
    PNG), named by what it holds: a changed split never meets the pairs of another."""
    from factory.images import encode_png
    from factory.sources.folders import packaged_portraits

    digest = hashlib.sha1(json.dumps(groups, sort_keys=True).encode()).hexdigest()[:8]
    folder = root / f"{split}-{digest}"
    if folder.is_dir():
        return folder
    partial = root / f"{folder.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    packaged = {}
    for person, items in groups.items():
        (partial / person).mkdir(parents=True)
        for n, item in enumerate(items):
            if ":" in item:
                packaged = packaged or packaged_portraits()
                (partial / person / f"{n:02d}_{item.split(':')[1].split('.')[0]}.png").write_bytes(encode_png(packaged[item]))
            else:
                (partial / person / f"{n:02d}_{Path(item).name}").symlink_to(Path(item).resolve())
    partial.rename(folder)
    return folder


def split_recipe(resolved, photos: Path, count: int, split: str):
    """The recipe with its source replaced by one split's photo folder, ``count`` pairs, no tracking."""
    from factory.recipe import Resolved, validate
    from toonfactory.recipe import RunRecipe

    data = resolved.to_dict()
    data["source"] = {"kind": "folder", "path": str(photos)}
    data["output"]["count"] = count
    data["tracking"]["mode"] = "none"
    return Resolved(validate(data, f"{resolved.origin} ({split} people)", RunRecipe), resolved.origin)


def factory_code_hash() -> str:
    """A digest of the factory's source: pairs made by other teacher or stage code are not reused."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "factory").rglob("*")):
        if path.suffix in (".py", ".json"):
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:8]


def make_pairs(resolved, out: Path, workers: int) -> Path:
    """The split recipe's pairs in ``out/<split>-<recipe hash>-<factory code hash>`` (a re-run with the same
    recipe and factory code reuses them)."""
    from factory import executors
    from factory.generate import generate

    data = out.parent / f"{out.name}-{resolved.hash}-{factory_code_hash()}"
    result = generate(resolved, data, executors.choose("local", workers))
    if result.failed:
        raise SystemExit(f"{data}: {len(result.failed)} shard(s) failed; re-run to retry them")
    return data


def heldout_pairs(config, data: Path, output_size: int) -> list[dict]:
    """Every pair of ``data`` at the training size and direction: person, source, target, the photo and its
    landmarks (scaled to the training size), and the target as the pairs hold it (``target_full``)."""
    from distill.data import PairDecoder
    from factory.dataset.reader import index_samples, read_field
    from factory.images import decode_png

    decoder = PairDecoder(config, augment=False)
    pairs = []
    for entry in index_samples(data):
        sample = {"__key__": entry.key, "real.png": read_field(data, entry, "real"), "toon.png": read_field(data, entry, "toon")}
        source, target = decoder.images(sample)
        target_full = decode_png(sample["toon.png" if config.direction == "real2toon" else "real.png"])
        faces = entry.meta["faces"]
        pairs.append({"person": person_of(entry.meta["source"]["item"]), "source": source, "target": target,
                      "target_full": target_full, "photo": source if config.direction == "real2toon" else target,
                      "scheme": faces["scheme"],
                      "points": np.asarray(faces["landmarks"]) * config.size / output_size})
    return pairs


def student_outputs(checkpoint: Path, sources: list[np.ndarray]) -> tuple[list[np.ndarray], list[float], int]:
    """The EMA student's outputs one image at a time, ms per image, parameters."""
    import torch

    from distill.data import to_image, to_tensor
    from distill.export import load_student

    model, _ = load_student(checkpoint)
    outputs, times = [], []
    with torch.no_grad():
        model(to_tensor(sources[0])[None])  # warm-up
        for source in sources:
            started = time.perf_counter()
            outputs.append(to_image(model(to_tensor(source)[None])))
            times.append((time.perf_counter() - started) * 1000)
    return outputs, times, sum(p.numel() for p in model.parameters())


def psnr_ssim(outputs: list[np.ndarray], targets: list[np.ndarray]) -> tuple[float, float]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = np.mean([peak_signal_noise_ratio(t, o, data_range=255) for o, t in zip(outputs, targets)])
    ssim = np.mean([structural_similarity(t, o, channel_axis=2, data_range=255) for o, t in zip(outputs, targets)])
    return float(psnr), float(ssim)


def text_cell(text: str, height: int, width: int) -> np.ndarray:
    import cv2

    cell = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(cell, text, (4, height // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1, cv2.LINE_AA)
    return cell


def write_grid(path: Path, rows: dict[str, list[np.ndarray]], people: list[str]) -> Path:
    """One column per person under its name, one row per entry of ``rows`` after its label."""
    import cv2

    size = next(iter(rows.values()))[0].shape[0]
    labels = np.vstack([text_cell("", 20, 120)] + [text_cell(name, size, 120) for name in rows])
    columns = [np.vstack([text_cell(person, 20, size)] + [images[i] for images in rows.values()])
               for i, person in enumerate(people)]
    cv2.imwrite(str(path), cv2.cvtColor(np.hstack([labels, *columns]), cv2.COLOR_RGB2BGR))
    return path


def webtoon_judge(assets: Path, photos: Path):
    """The judge of ``toon_likeness.py`` trained on the webtoon characters vs the photos under ``photos``,
    and a line saying what it saw."""
    from toon_likeness import aligned_folder, fit_judge, webtoon_characters

    art = aligned_folder(webtoon_characters(assets))
    seen = aligned_folder(sorted(p for p in photos.rglob("*") if p.is_file()))
    judge, accuracy = fit_judge([c for _, c, _ in art], [c for _, c, _ in seen])
    return judge, (f"judge: {len(art)} webtoon characters vs {len(seen)} photos of the people not held out "
                   f"(none of a held-out person), 5-fold CV accuracy {accuracy:.1%}")


def webtoon_share(judge, images: list[np.ndarray]) -> str:
    from factory.teachers.style_features import feature_matrix

    return f"{np.mean(judge.probability(feature_matrix(images)) > 0.5):.0%}"


def quality(images, targets, photos, pairs, judge, embedder) -> list[str]:
    """PSNR and SSIM vs ``targets``, share called webtoon, dlib cosine vs ``photos`` (and the share of the
    same person); '–' where ``images`` would be compared with themselves."""
    from toon_likeness import identity_similarity

    cells = ["–", "–"] if images is targets else [f"{v:.{d}f}" for v, d in zip(psnr_ssim(images, targets), (2, 3))]
    cells.append(webtoon_share(judge, images))
    if images is photos:
        return cells + ["–"]
    cos = np.array([identity_similarity(embedder, photo, image, p["points"], p["scheme"])
                    for photo, image, p in zip(photos, images, pairs)])
    return cells + [f"{cos.mean():.3f} ({np.mean(cos > SAME_PERSON):.0%})"]


def region_masks(pair: dict, masker) -> dict[str, np.ndarray]:
    """Where a held-out pair's error lies: the target's ink (thin lines darker than their surround), the
    face (the mesh's oval), hair and body (the rest of the photo's person mask), background."""
    import cv2

    from factory.teachers.webtoon import polygon_mask
    from warping.landmarks import FACE_OVAL

    size = pair["target"].shape[0]
    light = cv2.cvtColor(pair["target"], cv2.COLOR_RGB2Lab)[..., 0].astype(np.float32) * (100 / 255)
    ink = cv2.morphologyEx(light, cv2.MORPH_BLACKHAT, np.ones((7, 7), np.uint8)) > 15
    face = np.zeros((size, size), bool)
    if pair["scheme"] == "mediapipe478":
        face = (polygon_mask((size, size), pair["points"][FACE_OVAL]) > 0.5) & ~ink
    person = masker(pair["photo"]) > 0.5
    return {"ink lines": ink, "face": face, "hair and body": person & ~face & ~ink, "background": ~person & ~face & ~ink}


def region_table(pairs: list[dict], rows: dict[str, list[np.ndarray]]) -> list[list[str]]:
    """Per region: its share of the pixels, then each row's mean L1 (0-1) against the target there."""
    from factory.stages.segment import MediapipeMasker

    masker = MediapipeMasker()
    masks = [region_masks(p, masker) for p in pairs]
    errors = [np.stack([np.abs(i.astype(np.float32) - p["target"]).mean(2) / 255 for i, p in zip(images, pairs)])
              for images in rows.values()]
    table = []
    for region in masks[0]:
        inside = np.stack([m[region] for m in masks])
        table.append([region, f"{inside.mean():.0%}", *(f"{error[inside].mean():.3f}" for error in errors)])
    return table


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, default=QUICKSTART, help="its factory sections make the pairs, its distill: trains")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="recipe override, e.g. distill.steps=2000 or teacher.kind=cartoonize")
    parser.add_argument("--direction", choices=["real2toon", "toon2real"], help="shorthand for --set distill.direction=...")
    parser.add_argument("--assets", type=Path, default=ASSETS)
    parser.add_argument("--sources", default=",".join(SOURCES), help=f"comma list of {', '.join(SOURCES)}")
    parser.add_argument("--per-photo", type=int, default=3, help="pairs per photo (different jitter, warp, drawing)")
    parser.add_argument("--heldout-fraction", type=float, default=0.4, help="share of people held out (0.4 of 21: 8)")
    parser.add_argument("--heldout", help="comma list of held-out people instead (e.g. obama,person03)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the person split")
    parser.add_argument("--train-people", help="learn from only these training people (a data-scaling curve): a count N "
                        "(the first N by the seeded hash; a larger N adds to a smaller one's) or a comma list; the judge "
                        "still learns from every person not held out, so shares compare across counts")
    parser.add_argument("--train-pairs", type=int, help="training pairs in all (default: photos x --per-photo), to hold "
                        "the pairs fixed while the number of people changes")
    parser.add_argument("--workers", type=int, default=2, help="processes making the pairs")
    parser.add_argument("--export", type=Path, help="also export the trained student to ONNX in this folder")
    parser.add_argument("--student", type=Path, help="score this trained student (a checkpoint, e.g. make demo's "
                        "out/quickstart/student/checkpoints/step_0001500) instead of training one; unless --heldout "
                        "names them, everyone but the shipped portraits' people (the quickstart's) is held out")
    args = parser.parse_args()
    sources = tuple(args.sources.split(","))
    if not set(sources) <= set(SOURCES):
        parser.error(f"--sources: choose among {', '.join(SOURCES)}")
    groups = by_person(shared_photos(args.assets, sources))
    heldout = args.heldout.split(",") if args.heldout else None
    if args.student and heldout is None:
        heldout = sorted(set(groups) - set(by_person(shared_photos(args.assets, ("samples",)))))
    try:
        split = dict(zip(("seen", "heldout"), split_people(list(groups), args.seed, args.heldout_fraction, heldout)))
        split = {"train": training_people(split["seen"], args.train_people, args.seed) if args.train_people
                 else split["seen"], **split}
    except ValueError as exc:
        parser.error(str(exc))

    from toonfactory.cli.common import filter_native_logs

    filter_native_logs(sys.argv)  # mediapipe's and TFLite's lines off the terminal
    logging.basicConfig(level=logging.WARNING)
    import torch

    from distill.export import load_student
    from distill.train import train
    from factory.dataset.layout import read_manifest
    from factory.errors import UserError
    from factory.models.embedding import DlibEmbedder

    try:
        direction = [f"distill.direction={args.direction}"] if args.direction else []
        resolved = load_recipe(args.recipe, args.overrides + direction)
        recipe, config = resolved.recipe, resolved.recipe.distill
        record = None
        if args.student:
            record = load_student(args.student)[1]
            config = config.model_copy(update={"size": record["size"], "direction": record["direction"]})
        started = time.perf_counter()
        data, photos = {}, {}
        for side, people in split.items():
            photos[side] = photo_folder(args.out / "photos", side, {p: groups[p] for p in people})
            if side == "seen" or side == "train" and args.student:
                continue  # their photos train the judge; the student is given
            count = sum(len(groups[p]) for p in people) * args.per_photo
            if side == "train" and args.train_pairs:
                count = args.train_pairs
            data[side] = make_pairs(split_recipe(resolved, photos[side], count, side), args.out / "pairs" / side, args.workers)
        print(f"pairs ready (made or reused) in {time.perf_counter() - started:.0f} s: {args.recipe} "
              f"({recipe.teacher.kind} teacher), {args.per_photo} per photo")
        started = time.perf_counter()
        checkpoint = args.student or train(config, data["train"], args.out / "student", overwrite=True)
        train_minutes = (time.perf_counter() - started) / 60
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.export:
        from distill.export import export

        print(f"exported: {export(checkpoint, 'onnx', args.export)}")

    pairs = heldout_pairs(config, data["heldout"], recipe.output.size)
    inputs, targets = [p["source"] for p in pairs], [p["target"] for p in pairs]
    outputs, ms, params = student_outputs(checkpoint, inputs)
    judge, judged = webtoon_judge(args.assets, photos["seen"])
    embedder = DlibEmbedder()
    teacher = recipe.teacher.kind
    real2toon = config.direction == "real2toon"
    input_name, target_name = ("photo", f"{teacher} teacher") if real2toon else (f"{teacher} drawing", "photo")
    rows = {"student (EMA)": outputs, f"input: {input_name} (identity baseline)": inputs, f"target: {target_name}": targets}
    trained = f"{record['step']} steps (given)" if record else f"{config.steps} steps, {train_minutes:.1f} min"
    student = [f"{np.median(ms):.1f} ({min(ms):.1f})", trained]
    table = [[label, *quality(images, targets, inputs if real2toon else targets, pairs, judge, embedder),
              *(student if images is outputs else ["–", "–"])] for label, images in rows.items()
]
    if config.size != recipe.output.size:  # the judge on the target before it was shrunk for training
        full = [p["target_full"] for p in pairs]
        table.append([f"target at the pairs' {recipe.output.size} px", "–", "–", webtoon_share(judge, full), "–", "–", "–"])

    counts = {person: sum(p["person"] == person for p in pairs) for person in split["heldout"]}
    training_pairs = f"{args.student}'s" if record else read_manifest(data["train"])["counts"]["accepted"]
    print(f"training people ({len(split['train'])} of {len(split['seen'])} not held out): {', '.join(split['train'])}")
    print(f"held-out people ({len(split['heldout'])}), pairs each: {', '.join(f'{p} {n}' for p, n in counts.items())}")
    ngf = record["student"]["ngf"] if record else config.student.ngf  # a given student's own width, not the recipe's
    print(f"\n{config.direction} student ngf {ngf} ({params / 1e6:.2f} M parameters), {config.size} px, "
          f"batch {config.batch_size}, on {training_pairs} training pairs; "
          f"scored on {len(pairs)} held-out pairs; torch threads {torch.get_num_threads()}")
    print(judged + "\n")
    print(markdown(["output", "PSNR dB", "SSIM", "called webtoon", "identity cos vs photo (same person)",
                    "ms / image (best)", "training"], table))
    print(f"\nwhere the error lies: mean L1 (0-1) against the {target_name}, by region\n")
    print(markdown(["region", "pixels", "student", "identity baseline"],
                   region_table(pairs, {"student": outputs, "identity": inputs})))

    shown = [person for person, n in counts.items() if n][:GRID_PEOPLE]
    first = [next(i for i, p in enumerate(pairs) if p["person"] == person) for person in shown]
    grid_rows = {input_name: inputs, target_name: targets, "student": outputs}
    grid = write_grid(args.out / "heldout_grid.png", {name: [images[i] for i in first] for name, images in grid_rows.items()},
                      shown)
    print(f"\nheld-out grid ({' / '.join(grid_rows)}, one held-out person a column): {grid}")


if __name__ == "__main__":
    main()
