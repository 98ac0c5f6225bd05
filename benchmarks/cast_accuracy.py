"""Virtual-casting accuracy on real photos, printed as tables.

1. face_recognition: ``train/`` is the gallery, every face of every ``test/`` photo a query.
2. deepface leave-one-out: each photo queried against a gallery of the other 60 (rank-1, rank-5).
3. cross-teacher: the deepface queries toonified (a 256 px aligned crop around the face) by CartoonGAN
   and by the `webtoon` teacher (its default style, and a style fitted on 9 shared characters), cast
   against a gallery of 18 actors (deepface leave-one-out plus the 5 face_recognition people) as is,
   with ``--unwarp auto``, and with each realifier trained on *another* teacher's pairs; each row also
   gives the share of queries that abstain ("no clear match": z below ``CLEAR_MATCH_Z``).
4. abstention: the 30 shared webtoon characters (nobody in the gallery plays them), and the
   calibration table the threshold was chosen from.
5. drawn strangers: the same drawings cast against the gallery without their person (every photo of
   theirs left out), so any "match" is false; against each verdict rule (best z, and its gap to the
   second actor's z), beside what the rule costs the true drawn queries.
   Then the verdict a gallery with drawings gives (``casting.calibration``): each photo of the 18 actors drawn
   by the `webtoon` teacher as `cast gallery` draws it, the impostor and genuine levels read from the drawings
   of the gallery as the query sees it (the true query's photo, or the stranger's every photo, left out),
   and the likeness thresholds; also in galleries of 5 actors (the person and 4 others, or 5 others); before
   (ranked and judged by the photos alone) and now (by photos and drawings), beside the 90th percentile of the
   gallery's own drawings cast as strangers (leave-one-person-out: where the threshold comes from), and the AUC of
   the gallery's own drawings, k per query, as true against as strangers (where ``SHRINK_MEASURES`` comes from).
   A query is also k drawings of one person from k different photos (``--images-per-query``, default 1,2,3),
   cast together through `cast rank`'s scoring and vote (its verdict: the Borda winner's likeness averaged over
   the images); a true query of k leaves its k photos out of the gallery. ``--only strangers`` adds the `webtoon`
   drawings with ``--unwarp auto``; the last table is the verdict at 0.9 against the target, over queries and
   averaged over people (a person with 8 photos has 56 queries of 3).
6. embedder settings: the as-is rows again under the settings casting used before (rgb, no jitter,
   best photo per actor) and each step to a new gallery's (gray, 10 jitters, mean over the photos).

    python benchmarks/cast_accuracy.py --assets ../shared/assets \
        --realifier webtoon=RUN/student/export/student.onnx \
        --realifier cartoongan=RUN2/... --realifier cartoonize=RUN3/...   # TEACHER=student trained on its pairs
    python benchmarks/cast_accuracy.py --only strangers   # the drawn-strangers tables alone (webtoon, CartoonGAN queries)
    python benchmarks/cast_accuracy.py --only strangers --images-per-query 1,3

A realifier comes from ``toonfactory run recipes/realify-webtoon.yaml`` (or ``realify-cartoongan``,
``realify-cartoonize``), or from ``benchmarks/distill_quality.py --recipe recipes/realify-webtoon.yaml
--sources samples,face_recognition --export DIR``, which also scores it on held-out people (never on
deepface photos: those are the queries here).
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
import warnings
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.metrics import roc_auc_score
from rich.table import Table

from casting.calibration import CLEAR_MATCH_LIKENESS, SHRINK_MEASURES, DrawnLevels, draw_photo
from casting.caster import CastConfig
from casting.gallery import Gallery, collect_inputs, embedder_for, update_gallery
from casting.rank import CLEAR_MATCH_Z, actor_scores, aggregate, calibrate, face_scores, per_actor, query_faces
from casting.realify import load_realifier, parse_unwarp
from factory.faces import DetectorChain
from factory import faces as facelib
from factory.models.embedding import DlibEmbedder, embed
from factory.images import read_image

console = Console(width=150)

# Who is where in the two-person test photos: (x of a point inside the face box, name); any other
# face found there (obama_and_biden.jpg shows a girl at the bottom right) is not in the gallery.
TEST_TRUTH = {
    "alex_lacamoire1.jpg": [(790, "alex_lacamoire")],
    "johnsnow_test1.jpg": [(355, "kit_harington")],
    "obama1.jpg": [(740, "obama")],
    "kit_with_rose.jpg": [(300, "kit_harington"), (115, "rose_leslie")],
    "obama_and_biden.jpg": [(1240, "obama"), (830, "biden")],
}


def truth_of(name: str, face: facelib.Face) -> str | None:
    for x, who in TEST_TRUTH.get(name, []):
        if face.box[0] <= x <= face.box[2] and face.box[3] < 900:
            return who
    return None


def face_recognition_table(root: Path, embedder, detector) -> tuple[int, int]:
    inputs, attrs = collect_inputs(root / "train")
    gallery_dir = Path("/tmp") / f"cast_bench_fr_{int(time.time())}"
    gallery, update = update_gallery(gallery_dir, inputs, attrs, embedder, detector)
    table = Table("query", "face box", "truth", "rank-1", "score", "2nd", "ok", title="face_recognition: train gallery, test queries")
    right = total = 0
    actors = gallery.actor_names()
    for path in sorted((root / "test").glob("*")):
        image = read_image(path)
        found = detector.detect(image)
        vectors, _ = embed(embedder, image, found)
        for face, vector in zip(found, vectors):
            scores = actor_scores(gallery, vector[None], actors)[0]
            order = np.argsort(-scores)
            who = truth_of(path.name, face)
            ok = "" if who is None else ("yes" if actors[order[0]] == who else "NO")
            if who is not None:
                total += 1
                right += actors[order[0]] == who
            table.add_row(path.name, str(face.box.astype(int).tolist()), who or "(not in gallery)", actors[order[0]],
                          f"{scores[order[0]]:.3f}", f"{actors[order[1]]} {scores[order[1]]:.3f}", ok)
    console.print(table)
    console.print(f"gallery: {len(gallery.entries)} photos of {len(actors)} actors, {len(update.rejected)} rejected; "
                  f"rank-1 {right}/{total} faces")
    return right, total


def rank_of(scores: np.ndarray, actors: list[str], who: str) -> int:
    order = [actors[i] for i in np.argsort(-scores, kind="stable")]
    return order.index(who) + 1


def deepface_photos(root: Path, embedder, detector):
    """(file, identity, image, face, vector) for every deepface photo with exactly one face."""
    with open(root / "identities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    photos, rejected = [], []
    for row in rows:
        image = read_image(root / row["file"])
        found = detector.detect(image)
        if len(found) != 1:
            rejected.append((row["file"], f"{len(found)} faces"))
            continue
        vectors, _ = embed(embedder, image, found)
        photos.append((row["file"], row["identity"], image, found[0], vectors[0]))
    return photos, rejected


def loo_ranks(queries: np.ndarray, photos) -> list[int | None]:
    """Rank of the true identity for each query, against all other photos (None: nobody else of theirs)."""
    owners = np.array([p[1] for p in photos])
    actors = sorted(set(owners))
    sims = np.asarray(queries) @ np.stack([p[4] for p in photos]).T
    np.fill_diagonal(sims, np.nan)
    with warnings.catch_warnings():  # an actor with only the query's photo has no score
        warnings.simplefilter("ignore", RuntimeWarning)
        scores = np.nan_to_num(per_actor(sims, owners, actors), nan=-np.inf)
    return [rank_of(row, actors, who) if (owners == who).sum() > 1 else None for row, who in zip(scores, owners)]


def summary(ranks: list[int | None]) -> tuple[int, int, int]:
    usable = [r for r in ranks if r is not None]
    return sum(r == 1 for r in usable), sum(r <= 5 for r in usable), len(usable)


def query_crops(photos, size: int = 256, margin: float = 1.6) -> list[np.ndarray]:
    """An aligned crop around each photo's face: what a teacher toonifies."""
    return [facelib.crop(image, facelib.alignment_matrix(face.keypoints5(), size, margin), size)
            for _, _, image, face, _ in photos]


def cartoongan_toons(crops, weights: Path) -> list[np.ndarray]:
    from factory.teachers.cartoongan import CartoonGANConfig

    teacher = CartoonGANConfig(kind="cartoongan", weights=weights, device="cpu").build()
    return [toon for start in range(0, len(crops), 8) for toon in teacher.stylize(crops[start:start + 8])]


def webtoon_toons(crops, style: Path | None = None) -> list[np.ndarray]:
    """The `webtoon` teacher's drawing of each crop (parameters drawn per query from a fixed seed)."""
    from factory.sample import Sample
    from factory.teachers.webtoon import WebtoonConfig

    teacher = WebtoonConfig(kind="webtoon", style=style).build()
    return [teacher.draw(crop, Sample.create(f"query{i}", i, 0))[0] for i, crop in enumerate(crops)]


def fitted_style(characters: list[Path], out: Path) -> Path:
    """A style fitted on 9 characters of three series (boxer, finger, ssam), saved as JSON."""
    from factory.teachers.webtoon_fit import fit_style

    chosen = [p for p in characters if p.stem.split("_")[0] in ("boxer", "finger", "ssam")]
    style, _ = fit_style([read_image(p) for p in chosen], name="boxer+finger+ssam")
    out.write_text(style.model_dump_json(indent=1))
    return out


@dataclass
class Gallery18:
    """deepface photos plus the face_recognition train photos: one row per photo, its owner; with ``drawn``,
    the embedding of each photo's drawing as `cast gallery` makes it (NaN: no face found in the drawing)."""

    vectors: np.ndarray
    owners: np.ndarray
    actors: list[str]
    drawn: np.ndarray | None = None

    def scores(self, queries: np.ndarray, skip_self: bool, how: str = "mean") -> np.ndarray:
        """(Q, A) per-actor similarity as casting scores it; with ``skip_self`` query i never sees gallery row i."""
        sims = np.asarray(queries) @ self.vectors.T
        if skip_self:
            sims[np.arange(len(queries)), np.arange(len(queries))] = np.nan
        return per_actor(sims, self.owners, self.actors, how)


def gallery18(photos, root: Path, embedder, detector, draw: bool = False) -> Gallery18:
    inputs, _ = collect_inputs(root / "train")
    extra = []
    for item in inputs:
        image = read_image(item.image)
        found = detector.detect(image)
        if len(found) == 1:
            extra.append((item.actor, embed(embedder, image, found)[0][0], item.image.name, image, found[0]))
    owners = np.array([p[1] for p in photos] + [e[0] for e in extra])
    vectors = np.stack([p[4] for p in photos] + [e[1] for e in extra])
    drawn = None
    if draw:
        from factory.teachers.webtoon import WebtoonConfig

        teacher, rows = WebtoonConfig(kind="webtoon").build(), []
        for key, image, face in [(p[0], p[2], p[3]) for p in photos] + [e[2:] for e in extra]:
            drawing = draw_photo(image, face, key, teacher)
            again = detector.detect(drawing)
            rows.append(embed(embedder, drawing, again[:1])[0][0] if again else np.full(vectors.shape[1], np.nan, np.float32))
        drawn = np.stack(rows)
    return Gallery18(vectors, owners, sorted(set(owners)), drawn)


def judge(gallery: Gallery18, vectors: list[np.ndarray | None], truth: list[str] | None, how: str = "mean") -> dict:
    """rank-1/5 (a query with no face is a miss), abstention at CLEAR_MATCH_Z, best z per query."""
    usable = [v if v is not None else np.zeros(gallery.vectors.shape[1], np.float32) for v in vectors]
    scores = gallery.scores(np.stack(usable), skip_self=truth is not None, how=how)
    z = calibrate(scores)
    best = scores.argmax(1)
    top_z = np.where([v is not None for v in vectors], z[np.arange(len(best)), best], -np.inf)
    out = {"found": sum(v is not None for v in vectors), "n": len(vectors), "z": top_z,
           "abstain": float((top_z < CLEAR_MATCH_Z).mean())}
    if truth is not None:
        ranks = [1 + int((row > row[gallery.actors.index(who)]).sum()) if v is not None else 10**6
                 for row, who, v in zip(scores, truth, vectors)]
        right = np.array([r == 1 for r in ranks])
        answered = top_z >= CLEAR_MATCH_Z
        out.update(rank1=float(right.mean()), rank5=float(np.mean([r <= 5 for r in ranks])),
                   answered_right=float(right[answered].mean()) if answered.any() else float("nan"))
    return out


def embed_queries(images, detector, embedder, **options) -> tuple[list[np.ndarray | None], list]:
    vectors, faces = [], []
    for image in images:
        found = query_faces(image, detector, embedder, real_detector=detector, **options)
        vectors.append(found[0].vector if found else None)
        faces.append(found[0] if found else None)
    return vectors, faces


def stranger_rows(gallery: Gallery18, vectors: list[np.ndarray | None], truth: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(best z, best z minus the second's, rank-1 right) of each true query, and the same two for it as a
    stranger (its own actor's column removed); queries without a face are left out."""
    found = [i for i, v in enumerate(vectors) if v is not None]
    scores = gallery.scores(np.stack([vectors[i] if i in found else np.zeros_like(vectors[found[0]])
                                      for i in range(len(vectors))]), skip_self=True)[found]
    true_z, stranger_z, right = [], [], []
    for row, i in zip(scores, found):
        own = gallery.actors.index(truth[i])
        for target, values in ((true_z, row), (stranger_z, np.delete(row, own))):
            z = np.sort(calibrate(values)[0])[::-1]
            target.append((z[0], z[0] - z[1]))
        right.append(int(np.argmax(row)) == own)
    true_z, stranger_z = np.array(true_z), np.array(stranger_z)
    return true_z[:, 0], true_z[:, 1], np.array(right), stranger_z


def strangers_table(gallery: Gallery18, sets: dict[str, list], truth: list[str],
                    rules=((2.0, 0.0), (2.5, 0.0), (3.0, 0.0), (2.0, 1.0), (2.0, 1.5))) -> None:
    table = Table("queries", "rule: match when", "strangers matched (want <= 10%)", "true: abstain (want <= 10%)",
                  "true: right and answered", title=f"drawn strangers: each query against the {len(gallery.actors) - 1} "
                                                    "actors that are not its person, beside the true queries")
    for name, vectors in sets.items():
        z1, gap, right, stranger = stranger_rows(gallery, vectors, truth)
        for min_z, min_gap in rules:
            answer = (z1 >= min_z) & (gap >= min_gap)
            false = (stranger[:, 0] >= min_z) & (stranger[:, 1] >= min_gap)
            table.add_row(name, f"z >= {min_z}" + (f", gap >= {min_gap}" if min_gap else ""), f"{false.mean():.0%}",
                          f"{1 - answer.mean():.0%}", f"{(answer & right).mean():.0%}")
    console.print(table)


def cast_character(gallery: Gallery18, vectors: list[np.ndarray], rows: np.ndarray, drawings: bool) -> tuple[str, float]:
    """(winner, its mean likeness) of a character shown by ``vectors`` (one per image) cast against the gallery's
    ``rows`` through `cast rank`'s own scoring (``rank.face_scores``) and vote (``rank.aggregate``, its default top):
    the Borda winner over the images, judged by its likeness averaged over them. With ``drawings``, ranked by photos
    and drawings and the likeness raised by the drawings (now); without, by photos alone (before). The levels are
    read from the drawings of those rows only."""
    owners, names = gallery.owners[rows], sorted(set(gallery.owners[rows]))
    levels = DrawnLevels.measure(gallery.vectors[rows], owners, gallery.drawn[rows])
    cast_gallery = Gallery(root=Path("cast_accuracy"), embedder={}, detector="", actors={a: {} for a in names},
                           entries=[{"actor": a} for a in owners], vectors=gallery.vectors[rows],
                           drawn=gallery.drawn[rows] if drawings else None)
    with warnings.catch_warnings():  # an actor whose drawings all lost the face has no drawn score
        warnings.simplefilter("ignore", RuntimeWarning)
        faces = [face_scores(cast_gallery, levels, vector, names) for vector in vectors]
    overall = aggregate(np.stack([f[0] for f in faces]), names, CastConfig().top,
                        None if levels is None else np.array([f[3] for f in faces]))
    return overall[0]["actor"], -np.inf if levels is None else overall[0]["mean_likeness"]


def query_groups(vectors: list[np.ndarray | None], truth: list[str], per_query: int) -> list[tuple[str, tuple[int, ...]]]:
    """(person, photos) of every query of ``per_query`` drawings, each made from another photo of the person: every
    combination of the person's photos whose drawing has a face."""
    people = sorted(set(truth))
    return [(who, group) for who in people
            for group in combinations([i for i, v in enumerate(vectors) if v is not None and truth[i] == who], per_query)]


def likeness_rows(gallery: Gallery18, vectors: list[np.ndarray | None], truth: list[str], size: int | None = None,
                  drawings: bool = True, per_query: int = 1, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(likeness of the first actor, rank-1 right, person) of each true query against the gallery without its own
    photos, and (likeness, person) of each query as a stranger (every photo of its person left out); the levels are read from
    the drawings of the photos each query is cast against. A query is ``per_query`` drawings of one person
    (``query_groups``); a true one needs a photo of its person left in the gallery. With ``size``, each query is
    cast against ``size`` actors drawn at random (its person among them for the true query)."""
    rng = np.random.default_rng(seed)
    true, right, stranger, true_who, stranger_who = [], [], [], [], []
    for who, group in query_groups(vectors, truth, per_query):
        others = [a for a in gallery.actors if a != who]
        chosen = [others[j] for j in rng.permutation(len(others))] if size else others
        kept = ~np.isin(np.arange(len(gallery.owners)), group)
        for cast_as, actors in (("true", [who, *chosen[:size - 1]] if size else gallery.actors),
                                ("stranger", chosen[:size] if size else others)):
            rows = np.isin(gallery.owners, actors) & kept
            if cast_as == "true" and not (gallery.owners[rows] == who).any():
                continue
            first, likeness = cast_character(gallery, [vectors[i] for i in group], rows, drawings)
            if cast_as == "true":
                true.append(likeness)
                right.append(first == who)
                true_who.append(who)
            else:
                stranger.append(likeness)
                stranger_who.append(who)
    return tuple(map(np.array, (true, right, true_who, stranger, stranger_who)))


def per_person(hits: np.ndarray, people: np.ndarray) -> float:
    """The mean over people of each one's share of ``hits`` (a person with many photos has many more queries of
    several images: 56 triples of 8 photos, 10 of 5)."""
    return float(np.mean([hits[people == who].mean() for who in sorted(set(people))]))


def gallery_strangers(gallery: Gallery18, drawings: bool) -> np.ndarray:
    """The likeness of each of the gallery's own drawings cast against the gallery without its actor: the drawn
    strangers a threshold can be chosen on without looking at the scored queries."""
    return np.array([cast_character(gallery, [gallery.drawn[i]], gallery.owners != who, drawings)[1]
                     for i, who in enumerate(gallery.owners) if not np.isnan(gallery.drawn[i]).any()])


def best_threshold(true: np.ndarray, stranger: np.ndarray) -> tuple[float, float, float]:
    """(threshold, strangers matched, true abstaining) where the larger of the two shares is least: the best any
    single threshold chosen on these very queries could do, an upper bound, not a calibration."""
    cells = [(max((stranger >= t).mean(), (true < t).mean()), t) for t in np.unique(np.r_[true, stranger])]
    _, t = min(cells)
    return float(t), float((stranger >= t).mean()), float((true < t).mean())


def likeness_table(gallery: Gallery18, sets: dict[str, list], truth: list[str], per_query=(1,),
                   thresholds=(0.8, CLEAR_MATCH_LIKENESS, 1.0)) -> None:
    """Before/now for one drawing per query; for several (``per_query``), `cast rank` as it is (now) only. Then the
    verdict at ``CLEAR_MATCH_LIKENESS`` against the target, per image and per character."""
    table = Table("queries", "images per query", "actors", "verdict", "true / strangers", "rank-1", "match when",
                  "strangers matched (want <= 10%)", "true: abstain (want <= 10%)", "true: right and answered",
                  title="verdict by likeness on drawn impostors (casting.calibration): each query as a stranger (its "
                        "person left out) and as itself; before: photos alone, now: photos and drawings; a query of "
                        "k images is k drawings of one person from k different photos, cast as `cast rank` casts them")
    target = Table("queries", "images per query", "true / strangers (people)", "rank-1 (want >= 90%)",
                   "strangers matched (want <= 10%)", "true: abstain (want <= 10%)", "meets the target",
                   title=f"the verdict at likeness >= {CLEAR_MATCH_LIKENESS}, {len(gallery.actors)} actors (now): over "
                         "queries / mean over people")
    for drawings in (False, True):
        held_out = gallery_strangers(gallery, drawings)
        console.print(f"{'now' if drawings else 'before'}: the gallery's own {len(held_out)} drawings as strangers "
                      f"(leave-one-person-out): 90th percentile of likeness {np.quantile(held_out, 0.9):.3f}, "
                      f"{(held_out >= CLEAR_MATCH_LIKENESS).mean():.0%} at >= {CLEAR_MATCH_LIKENESS}")
    own = [None if np.isnan(v).any() else v for v in gallery.drawn]
    for k in per_query:  # where SHRINK_MEASURES was chosen: held-out people, not the scored queries
        true, _, _, stranger, _ = likeness_rows(gallery, own, list(gallery.owners), None, True, k)
        console.print(f"held-out: the gallery's own drawings, {k} per query (true: photos left out; strangers: person left out): "
                      f"AUC {roc_auc_score([1] * len(true) + [0] * len(stranger), np.r_[true, stranger]):.3f} "
                      f"(levels shrunk by {SHRINK_MEASURES:g})")
    for name, vectors in sets.items():
        for k in per_query:
            for size in (None, 5):
                for drawings in (False, True) if k == 1 else (True,):
                    true, right, true_who, stranger, stranger_who = likeness_rows(gallery, vectors, truth, size, drawings, k)
                    for threshold in thresholds:
                        answer = true >= threshold
                        table.add_row(name, str(k), str(size or len(gallery.actors)), "now" if drawings else "before",
                                      f"{len(true)} / {len(stranger)}", f"{right.mean():.1%}", f"likeness >= {threshold}",
                                      f"{(stranger >= threshold).mean():.0%}", f"{1 - answer.mean():.0%}",
                                      f"{(answer & right).mean():.0%}")
                    if size is None and drawings:
                        cells = [(hits.mean(), per_person(hits, who)) for hits, who in (
                            (right, true_who), (stranger >= CLEAR_MATCH_LIKENESS, stranger_who), (true < CLEAR_MATCH_LIKENESS, true_who))]
                        met = [r >= 0.9 and false <= 0.1 and abstain <= 0.1 for r, false, abstain in zip(*cells)]
                        t, false, abstain = best_threshold(true, stranger)
                        console.print(f"{name}, {k} per query: the best single threshold on these queries, {t:.3f}, "
                                      f"matches {false:.0%} of strangers and leaves {abstain:.0%} of true queries abstaining")
                        target.add_row(name, str(k), f"{len(true)} / {len(stranger)} ({len(set(true_who))} / {len(set(stranger_who))})",
                                       *[f"{a:.1%} / {b:.1%}" if n == 0 else f"{a:.0%} / {b:.0%}" for n, (a, b) in enumerate(cells)],
                                       " / ".join("yes" if m else "no" for m in met))
    console.print(table)
    console.print(target)


def parse_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(k) for k in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of counts >= 1 (e.g. 1,2,3)")
    return counts


def parse_realifier(item: str) -> tuple[str, Path]:
    teacher, _, model = item.partition("=")
    if teacher not in ("webtoon", "cartoongan", "cartoonize") or not model:
        raise SystemExit(f"--realifier {item!r}: expected TEACHER=MODEL with TEACHER webtoon, cartoongan or cartoonize")
    return teacher, Path(model)


def settings_table(assets: Path, detector, queries: dict, characters: list[np.ndarray], drawn, casting: dict):
    """As-is queries under the embedder settings casting used before (rgb, no jitter, best photo) and
    each step to today's (``casting``: gray, 10 jitters, mean over the actor's photos)."""
    steps = [("rgb, 0 jitters, best photo", DlibEmbedder(), "best"), ("rgb, 0 jitters, mean", DlibEmbedder(), "mean"),
             ("gray, 0 jitters, mean", DlibEmbedder(colour="gray"), "mean")]
    table = Table("settings", *queries, "30 characters: abstain", title="as-is queries: rank-1 / abstain by embedder settings")
    for label, embedder, how in steps:
        photos, _ = deepface_photos(assets / "faces" / "deepface", embedder, detector)
        gallery, truth = gallery18(photos, assets / "faces" / "face_recognition", embedder, detector), [p[1] for p in photos]
        cells = [judge(gallery, embed_queries(images, detector, embedder)[0], truth, how) for images in queries.values()]
        nobody = judge(gallery, embed_queries(characters, drawn, embedder)[0], None, how)
        table.add_row(label, *[f"{c['rank1']:.1%} / {c['abstain']:.0%}" for c in cells], f"{nobody['abstain']:.0%}")
    table.add_row("gray, 10 jitters, mean (casting)", *[f"{casting[n]['rank1']:.1%} / {casting[n]['abstain']:.0%}" for n in queries],
                  f"{casting['characters']['abstain']:.0%}")
    console.print(table)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "assets")
    parser.add_argument("--realifier", action="append", default=[], metavar="TEACHER=MODEL",
                        help="a toon2real student trained on TEACHER's pairs (webtoon, cartoongan, cartoonize); "
                             "used only on the other teachers' queries (repeatable)")
    parser.add_argument("--sheet", type=Path, help="write the toonified queries here as a PNG contact sheet")
    parser.add_argument("--only", choices=["strangers"], help="strangers: the drawn-strangers tables alone (real photos, "
                                                               "the default style's and CartoonGAN's drawings)")
    parser.add_argument("--images-per-query", type=parse_counts, default=(1, 2, 3), metavar="K,K,...",
                        help="the likeness table's queries: K drawings of one person from K different photos, cast "
                             "together as `cast rank` casts a character's images (default 1,2,3)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    faces_root = args.assets / "faces"
    embedder = embedder_for("dlib")  # a new casting gallery's settings
    detector = DetectorChain("dlib,mediapipe", min_size=40)

    started = time.perf_counter()
    if args.only == "strangers":
        photos, _ = deepface_photos(faces_root / "deepface", embedder, detector)
        gallery, truth = gallery18(photos, faces_root / "face_recognition", embedder, detector, draw=True), [p[1] for p in photos]
        crops = query_crops(photos)
        toons = webtoon_toons(crops)
        sets = {"real photo (whole image)": [p[4] for p in photos],
                "webtoon, default style": embed_queries(toons, detector, embedder)[0],
                "webtoon, default style, auto unwarp": embed_queries(toons, detector, embedder,
                                                                     inverse_warp=parse_unwarp("auto"))[0],
                "CartoonGAN (Hayao)": embed_queries(cartoongan_toons(crops, args.assets / "models" / "cartoongan_hayao"),
                                                    detector, embedder)[0]}
        strangers_table(gallery, sets, truth)
        likeness_table(gallery, sets, truth, args.images_per_query)
        console.print(f"seconds: {time.perf_counter() - started:.0f}")
        return
    fr_right, fr_total = face_recognition_table(faces_root / "face_recognition", embedder, detector)

    photos, rejected = deepface_photos(faces_root / "deepface", embedder, detector)
    real_ranks = loo_ranks(np.stack([p[4] for p in photos]), photos)
    r1, r5, n = summary(real_ranks)
    misses = Table("photo", "identity", "rank of truth", title="deepface leave-one-out: misses at rank 1")
    for photo, rank in zip(photos, real_ranks):
        if rank is not None and rank > 1:
            misses.add_row(photo[0], photo[1], str(rank))
    console.print(misses)
    console.print(f"deepface: {len(photos)} photos embedded, not used: {rejected or 'none'}")

    gallery = gallery18(photos, faces_root / "face_recognition", embedder, detector, draw=True)
    truth = [p[1] for p in photos]
    characters = sorted(p for p in (args.assets / "webtoon" / "characters").iterdir()
                        if p.stem not in ("jisoo", "yooa", "paint_boy"))
    crops = query_crops(photos)
    queries = {"CartoonGAN (Hayao)": cartoongan_toons(crops, args.assets / "models" / "cartoongan_hayao"),
               "webtoon, default style": webtoon_toons(crops)}
    style_file = fitted_style(characters, Path("/tmp") / f"cast_bench_style_{int(time.time())}.json")
    queries["webtoon, fitted style"] = webtoon_toons(crops, style_file)
    teacher_of = {"CartoonGAN (Hayao)": "cartoongan", "webtoon, default style": "webtoon", "webtoon, fitted style": "webtoon"}
    realifiers = [(teacher, load_realifier(model)) for teacher, model in map(parse_realifier, args.realifier)]
    auto = parse_unwarp("auto")
    table = Table("queries", "treatment", "faces", "rank-1", "rank-5", "abstain", "right when answering", "undone (mean)",
                  title=f"cross-teacher: deepface leave-one-out vs {len(gallery.actors)} actors, dlib; abstain = z < {CLEAR_MATCH_Z}")
    calibration = {}

    def add(name, treatment, vectors, faces=None):
        result = judge(gallery, vectors, truth)
        undone = "" if not faces else f"{np.mean([f.unwarp_undone or 0 for f in faces if f is not None]):.2f}"
        table.add_row(name, treatment, f"{result['found']}/{result['n']}", f"{result['rank1']:.1%}", f"{result['rank5']:.1%}",
                      f"{result['abstain']:.1%}", f"{result['answered_right']:.1%}", undone)
        return result

    calibration["real photos"] = add("real photo (whole image)", "-", [p[4] for p in photos])["z"]
    as_is = {"real photo (crop)": add("real photo (crop)", "as is", embed_queries(crops, detector, embedder)[0])}
    add("real photo (crop)", "auto unwarp", *embed_queries(crops, detector, embedder, inverse_warp=auto))
    drawn_vectors = {"real photo (whole image)": [p[4] for p in photos]}
    for name, toons in queries.items():
        drawn_vectors[name] = embed_queries(toons, detector, embedder)[0]
        as_is[name] = add(name, "as is", drawn_vectors[name])
        calibration[name] = as_is[name]["z"]
        add(name, "auto unwarp", *embed_queries(toons, detector, embedder, inverse_warp=auto))
        for teacher, realifier in realifiers:
            if teacher != teacher_of[name]:  # never the teacher that drew the queries
                add(name, f"realify ({teacher} pairs)", embed_queries(toons, detector, embedder, realifier=realifier)[0])
                add(name, f"realify ({teacher}) + auto unwarp",
                    *embed_queries(toons, detector, embedder, realifier=realifier, inverse_warp=auto))
    console.print(table)
    strangers_table(gallery, drawn_vectors, truth)
    likeness_table(gallery, drawn_vectors, truth, args.images_per_query)

    drawn = DetectorChain(f"dlib,mediapipe,anime:{args.assets / 'models' / 'lbpcascade_animeface.xml'}", min_size=24)
    nobody = Table("treatment", "faces", "abstain (want >= 50%)", "median z", title="30 webtoon characters, nobody in the gallery")
    drawings = [read_image(p) for p in characters]
    for treatment, options in (("as is", {}), ("auto unwarp", {"inverse_warp": auto})):
        vectors, _ = embed_queries(drawings, drawn, embedder, **options)
        result = judge(gallery, vectors, None)
        as_is.setdefault("characters", result)
        calibration[f"webtoon characters ({treatment})"] = result["z"]
        nobody.add_row(treatment, f"{result['found']}/{result['n']}", f"{result['abstain']:.1%}", f"{np.median(result['z']):.2f}")
    console.print(nobody)

    thresholds = [1.5, 1.75, 2.0, 2.25, 2.5, 3.0]
    chooser = Table("queries", *[f"z < {t}" for t in thresholds], title="calibration: share that abstains at each threshold")
    for name, z in calibration.items():
        chooser.add_row(name, *[f"{(z < t).mean():.0%}" for t in thresholds])
    console.print(chooser)
    settings_table(args.assets, detector, {"real photo (crop)": crops, **queries}, drawings, drawn, as_is)
    if args.sheet:
        from PIL import Image

        rows = [crops[:12]] + [toons[:12] for toons in queries.values()]
        Image.fromarray(np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)).save(args.sheet)

    final = Table("benchmark", "result", title=f"virtual casting accuracy (dlib ResNet 128-d {embedder.settings}, cosine, mean over an actor's photos)")
    final.add_row("face_recognition test faces, rank-1", f"{fr_right}/{fr_total}")
    final.add_row("deepface leave-one-out rank-1", f"{r1}/{n} = {r1 / n:.1%}")
    final.add_row("deepface leave-one-out rank-5", f"{r5}/{n} = {r5 / n:.1%}")
    final.add_row("seconds", f"{time.perf_counter() - started:.0f}")
    console.print(final)


if __name__ == "__main__":
    main()
