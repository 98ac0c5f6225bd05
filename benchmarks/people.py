"""Who each benchmark photo shows, and a split of those people into training and held-out.

A quality figure on held-out *pairs* of people the student trained on measures memory, not
distillation: here every photo is mapped to its person and whole people are held out. It lives
with the benchmarks because it knows the layout of ``../shared/assets/faces``, which the product
must never need.

Items are what a recipe source reads: the packaged portraits by name (``skimage:astronaut``,
``toonfactory:barack-obama.jpg``, see :func:`factory.sources.folders.packaged_portrait_names`) and
file paths. People: ``faces/deepface`` by its ``identities.csv``; ``faces/face_recognition`` by its
``train/<person>/`` folders and ``test/<person><n>.jpg`` names; any other file by its folder's name
(one folder per person, as actor galleries are laid out). The shipped Obama and Biden portraits are
the face_recognition examples' Obama and Biden.
"""

from __future__ import annotations

import csv
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from factory.images import IMAGE_SUFFIXES

SOURCES = ("samples", "deepface", "face_recognition")
ALIASES = {"barack_obama": "obama", "joe_biden": "biden", "johnsnow": "kit_harington"}
SEVERAL_PEOPLE = {"two_people", "obama_and_biden", "kit_with_rose"}


@lru_cache(maxsize=None)
def identities(csv_path: Path) -> dict[str, str]:
    """File name -> person of a deepface-style ``identities.csv``."""
    with open(csv_path, newline="") as handle:
        return {row["file"]: row["identity"] for row in csv.DictReader(handle)}


def person_of(item: str) -> str | None:
    """The person an item shows; None for photos of several people and odd inputs (``edge_cases``)."""
    prefix, _, name = item.partition(":")
    if prefix in ("skimage", "matplotlib", "toonfactory"):
        stem = Path(name).stem.replace("-", "_")
        return ALIASES.get(stem, stem)
    path = Path(item)
    if path.stem in SEVERAL_PEOPLE or "edge_cases" in path.parts:
        return None
    if (path.parent / "identities.csv").is_file():
        return identities(path.parent / "identities.csv").get(path.name)
    if path.parent.name == "test" and path.parent.parent.name == "face_recognition":
        stem = re.sub(r"(_test)?\d*$", "", path.stem)
        return ALIASES.get(stem, stem)
    return path.parent.name


def shared_photos(assets: Path, sources: tuple[str, ...] = SOURCES) -> list[str]:
    """Items of ``sources``: the packaged portraits (``samples``) and the shared face photos, each of one person."""
    from factory.sources.folders import packaged_portrait_names

    faces = assets / "faces"
    files = []
    if "deepface" in sources:
        files += sorted((faces / "deepface").glob("*.jpg"))
    if "face_recognition" in sources:
        files += [p for part in ("train", "test") for p in sorted((faces / "face_recognition" / part).rglob("*"))
                  if p.suffix.lower() in IMAGE_SUFFIXES]
    items = (packaged_portrait_names() if "samples" in sources else []) + [str(p) for p in files]
    return [item for item in items if person_of(item) is not None]


def by_person(items: list[str]) -> dict[str, list[str]]:
    """Items grouped by person (sorted by person, items in their given order)."""
    groups: dict[str, list[str]] = {}
    for item in items:
        groups.setdefault(person_of(item), []).append(item)
    return dict(sorted(groups.items()))


def split_people(people: list[str], seed: int = 0, heldout_fraction: float = 0.4,
                 heldout: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(training, held-out) people, disjoint and sorted: ``heldout`` when given, else the
    ``heldout_fraction`` of people that rank first by a hash of (seed, person), at least one on each side."""
    people = sorted(set(people))
    if heldout is None:
        ranked = sorted(people, key=lambda p: hashlib.sha1(f"{seed}/{p}".encode()).hexdigest())
        heldout = ranked[:min(max(round(len(people) * heldout_fraction), 1), len(people) - 1)]
    unknown = sorted(set(heldout) - set(people))
    if unknown:
        raise ValueError(f"--heldout: unknown people {', '.join(unknown)} (known: {', '.join(people)})")
    train = [p for p in people if p not in heldout]
    if not train or not heldout:
        raise ValueError("--heldout: the split needs at least one person on each side")
    return train, sorted(set(heldout))


def training_people(train: list[str], choice: str, seed: int = 0) -> list[str]:
    """A subset of the ``train`` people to learn from (a data-scaling curve): ``choice`` is a count N
    (the first N by a hash of (seed, person), so a larger N adds people to a smaller N's) or a comma list
    of names, each of them a training person (never a held-out one)."""
    if choice.isdigit():
        if not 1 <= int(choice) <= len(train):
            raise ValueError(f"--train-people: {choice} is not between 1 and the {len(train)} training people")
        ranked = sorted(train, key=lambda p: hashlib.sha1(f"{seed}/{p}".encode()).hexdigest())
        return sorted(ranked[:int(choice)])
    chosen = sorted(set(choice.split(",")))
    unknown = sorted(set(chosen) - set(train))
    if unknown:
        raise ValueError(f"--train-people: {', '.join(unknown)} not among the training people ({', '.join(train)})")
    return chosen
