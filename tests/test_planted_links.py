"""Issue 28's property: a symbolic link planted at any name a command writes, pointing outside its folder
at files the test owns, changes nothing outside the folder; the command either refuses in one line
naming the link, or writes beside it without following it.

Each command runs once; every name it wrote (files and folders, plus the lock and its fixed staging
names) is then, one at a time, replaced by a link in a copy of that folder, and the command runs again."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint, write_dataset  # noqa: E402

from factory.errors import UserError  # noqa: E402
from factory.files import LOCK_NAME  # noqa: E402
from tests.conftest import QUICKSTART, REPO, SMALL  # noqa: E402
from tests.test_adapt_stylegan2 import base  # noqa: E402,F401 (the tiny StyleGAN2 checkpoint fixture)

OLD = 1_000_000_000  # the victims' mtime: a write through a link shows even when its bytes are the same
runner = CliRunner()


def cli(*args) -> BaseException | None:
    from toonfactory.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    return None if isinstance(result.exception, SystemExit) and not result.exit_code else result.exception


def call(function, *args, **kwargs) -> BaseException | None:
    try:
        function(*args, **kwargs)
    except Exception as exc:  # the test judges it: a UserError naming the link passes, anything else fails
        return exc
    return None


def listing(root: Path) -> dict[str, tuple]:
    """Everything under ``root`` without following links: kind, bytes or link target, mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        if path.is_symlink():
            found[str(path.relative_to(root))] = ("link", os.readlink(path))
        elif path.is_dir():
            found[str(path.relative_to(root))] = ("dir", stat.st_mtime_ns)
        else:
            found[str(path.relative_to(root))] = ("file", path.read_bytes(), stat.st_mtime_ns)
    return found


@dataclass
class Command:
    """A command run on ``folder`` (where it writes); ``reset`` undoes what would make a rerun skip
    its writes; ``staging`` names it writes only while it runs (a folder's ending in /)."""

    run: Callable[[Path], BaseException | None]
    folder: Path
    reset: Callable[[Path], None] = lambda folder: None
    staging: list[str] = field(default_factory=list)


def victim_for(original: Path, outside: Path, folder: bool) -> Path:
    """A copy of ``original`` outside (so a reader following the link still reads something valid), aged;
    where there is none, a folder holding a file or a file."""
    victim = outside / "target"
    if original.is_dir() and not original.is_symlink():
        shutil.copytree(original, victim, symlinks=True)
    elif folder:
        victim.mkdir()
        (victim / "precious.txt").write_bytes(b"precious")
    else:
        victim.write_bytes(original.read_bytes() if original.is_file() else b"{}")
    for path in [victim, *victim.rglob("*")] if victim.is_dir() else [victim]:
        os.utime(path, ns=(OLD * 10**9, OLD * 10**9))
    return victim


def names_link(message: str, folder: Path, name: str) -> bool:
    """Whether an error names the link, or a folder of the command's on the way to it (its whole path, or
    the path inside the folder as a file records it, quoted)."""
    parts = [name, *map(str, Path(name).parents[:-1])]
    return any(str(folder / part) in message or f"'{part}" in message for part in parts)


def planted_failures(command: Command, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Run the command, then rerun it once per name it wrote with a link planted there (in a fresh copy of
    the folder, at the same place); the names tried and what went wrong (a write outside, a traceback, an error that does not name the link)."""
    before = listing(command.folder) if command.folder.exists() else {}
    first = command.run(command.folder)
    assert first is None, f"the first run failed: {first!r}"
    after = listing(command.folder)
    names = [name for name, entry in after.items() if before.get(name) != entry and entry[0] != "link"]
    folders = {name.rstrip("/") for name in command.staging if name.endswith("/")}
    names += [name.rstrip("/") for name in [LOCK_NAME, *command.staging] if name not in names]
    assert names, "the command wrote nothing"
    failures, folder, outside = [], command.folder, tmp_path / "outside"
    pristine = tmp_path / f"{folder.name}.pristine"
    shutil.copytree(folder, pristine, symlinks=True)
    for name in names:  # each in the same place as the first run: paths recorded in its files still hold
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder, symlinks=True)
        command.reset(folder)
        shutil.rmtree(outside, ignore_errors=True)
        outside.mkdir()
        planted = folder / name
        victim = victim_for(planted, outside, name in folders)
        if planted.is_dir() and not planted.is_symlink():
            shutil.rmtree(planted)
        else:
            planted.unlink(missing_ok=True)
        planted.parent.mkdir(parents=True, exist_ok=True)
        planted.symlink_to(victim, target_is_directory=victim.is_dir())
        untouched = listing(outside)
        error = command.run(folder)
        if listing(outside) != untouched:
            failures.append(f"{name}: written through the link")
        if error is not None and not isinstance(error, UserError):
            failures.append(f"{name}: {type(error).__name__}: {error}")
        elif error is not None and not names_link(str(error), folder, name):
            failures.append(f"{name}: the error names neither the link nor a folder it is in: {error}")
    return names, failures


def check(command: Command, tmp_path: Path, expect: list[str]) -> None:
    names, failures = planted_failures(command, tmp_path)
    missing = [name for name in expect if name not in names]
    assert not missing, f"names the command did not write: {missing} (wrote {names})"
    assert not failures, "\n".join(failures)


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", ngf=4, depth=2, size=32)


@pytest.fixture
def dataset(small_dataset) -> Path:
    """The session's small quickstart dataset (made with this module's QUICKSTART and SMALL)."""
    return small_dataset


def test_infer_on_images_and_a_video(student, tmp_path):
    import cv2

    from distill.infer import infer

    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(real_image(rng, 32)).save(inputs / "a.png")
    Image.fromarray(real_image(rng, 32)).save(inputs / "sub" / "b.jpg")
    writer = cv2.VideoWriter(str(inputs / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    for _ in range(3):
        writer.write(real_image(rng, 32))
    writer.release()
    files = [inputs / "a.png", inputs / "sub" / "b.jpg", inputs / "clip.avi"]
    command = Command(lambda out: call(infer, student, files, out), tmp_path / "out")
    check(command, tmp_path, ["a.png", "sub", "sub/b.png", "clip.mp4", ".toonfactory.made-by"])


def test_infer_tracking_faces_in_a_video(student, tmp_path, assets):
    from distill.config import InferConfig
    from distill.infer import infer

    clip = assets / "video" / "short_hamilton_clip.mp4"
    config = InferConfig.of(mode="face", max_frames=2, embedder="none")
    command = Command(lambda out: call(infer, student, [clip], out, config), tmp_path / "out")
    check(command, tmp_path, ["short_hamilton_clip.mp4", "short_hamilton_clip.tracks.json"])


def test_export(student, tmp_path):
    from distill.export import export

    def run(out: Path):
        for format in ("safetensors", "onnx", "torchscript"):
            error = call(export, student, format, out)
            if error is not None:
                return error
        return None

    check(Command(run, tmp_path / "export"), tmp_path, ["student.onnx", "student.torchscript.pt", "student.safetensors", "student.json"])


def test_train(tmp_path):
    from distill.train import train
    from tests.test_reliability import tiny

    pairs = write_dataset(tmp_path / "pairs", shards=1, per_shard=8, size=32)
    config = tiny(steps=2, val_fraction=0.3, val_every=1, val_images=2)
    command = Command(lambda out: call(train, config, pairs, out, overwrite=True), tmp_path / "run",
                      staging=["checkpoints/step_0000002.tmp/"])
    check(command, tmp_path, ["checkpoints", "checkpoints/step_0000002/student.safetensors", "validation",
                              "metrics.jsonl"])


def test_train_resumed(tmp_path):
    from distill.train import train
    from tests.test_reliability import tiny

    pairs = write_dataset(tmp_path / "pairs", shards=1, per_shard=4, size=32)
    config = tiny(steps=3, keep_checkpoints=2)

    def reset(out: Path) -> None:  # the last step to do again, from the checkpoint before it
        shutil.rmtree(out / "checkpoints" / "step_0000003")

    command = Command(lambda out: call(train, config, pairs, out, resume="latest"), tmp_path / "run", reset,
                      staging=["checkpoints/step_0000001/"])  # older than the resumed one: pruned
    check(command, tmp_path, ["checkpoints/step_0000003", "metrics.jsonl"])


def test_generate(tmp_path, dataset):
    def reset(folder: Path) -> None:  # a shard to redo, so its files are written again
        (folder / "stats" / "00001.done").unlink()

    def run(out: Path):
        return cli("generate", QUICKSTART, "--out", out, *[a for s in SMALL for a in ("--set", s)])

    shutil.copytree(dataset, tmp_path / "data")
    reset(tmp_path / "data")
    command = Command(run, tmp_path / "data", reset, staging=["shards/00001.tar.tmp"])
    check(command, tmp_path, ["shards/00001.tar", "stats/00001.json", "stats/00001.done", "manifest.json",
                              "README.md", "contact_sheet.png"])


@pytest.mark.parametrize("args, expect", [
    (["inspect"], ["contact_sheet.png"]),
    (["dataset", "card"], ["README.md"]),
    (["dataset", "map"], ["embedding_map.png"]),
], ids=["inspect", "dataset card", "dataset map"])
def test_commands_on_a_dataset(tmp_path, dataset, args, expect):
    shutil.copytree(dataset, tmp_path / "data")
    check(Command(lambda data: cli(*args, data), tmp_path / "data"), tmp_path, expect)


def test_marking_a_pair_bad(tmp_path, dataset):
    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark

    shutil.copytree(dataset, tmp_path / "data")
    key = index_samples(tmp_path / "data")[0].key
    check(Command(lambda data: call(mark, data, key, "blurry"), tmp_path / "data"), tmp_path, ["review.json"])


def test_dataset_filter(tmp_path, dataset):
    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark

    shutil.copytree(dataset, tmp_path / "data")
    mark(tmp_path / "data", index_samples(tmp_path / "data")[0].key, "blurry")

    def reset(versions: Path) -> None:  # a new version goes to a new folder
        shutil.rmtree(versions / "clean")

    command = Command(lambda versions: cli("dataset", "filter", tmp_path / "data", "--out", versions / "clean",
                                           "--tracking", "none"),
                      tmp_path / "versions", reset, staging=[".clean.filter.lock"])
    check(command, tmp_path, ["clean", "clean/manifest.json", "clean/shards/00000.tar"])


@pytest.mark.parametrize("kind", ["warp", "style"])
def test_previews(tmp_path, kind):
    import skimage.data

    from factory.teachers.webtoon_style import DEFAULT_STYLE

    photo = tmp_path / "photo.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    extra = ["--style", DEFAULT_STYLE] if kind == "style" else ["--size", 128]
    command = Command(lambda folder: cli(kind, "preview", photo, *extra, "--out", folder / "preview.png"),
                      tmp_path / "previews")
    check(command, tmp_path, ["preview.png"])


def test_cast_gallery_and_rank(tmp_path):
    from casting.gallery import Gallery, collect_inputs, update_gallery
    from casting.rank import cast
    from casting.report import write_report
    from tests.test_cast import COLOURS, ColourEmbedder, SquareDetector, face_image, save

    for name in ("ann", "bob", "cid"):
        save(face_image(COLOURS[name]), tmp_path / "actors" / name / "1.png")
    inputs, attrs = collect_inputs(tmp_path / "actors")

    def reset(gallery: Path) -> None:  # a changed photo is embedded again and its thumbnail rewritten
        save(face_image(COLOURS["ann"], shift=3), tmp_path / "actors" / "ann" / "1.png")

    gallery = Command(lambda out: call(update_gallery, out, inputs, attrs, ColourEmbedder(), SquareDetector()),
                      tmp_path / "gallery", reset)
    update_gallery(tmp_path / "same", inputs, attrs, ColourEmbedder(), SquareDetector())  # the embeddings' name is their content's
    embeddings = json.loads((tmp_path / "same" / "gallery.json").read_text())["embeddings"]
    check(gallery, tmp_path, ["gallery.json", embeddings, "faces"])
    query = save(face_image(COLOURS["bob"], shift=2), tmp_path / "q" / "1.png")
    built = Gallery.load(tmp_path / "gallery")
    result = cast(built, [query], ColourEmbedder(), SquareDetector(), top=2)
    rank = Command(lambda out: call(write_report, result, built, out), tmp_path / "report")
    check(rank, tmp_path, ["ranking.json", "report.html", "report.png", "faces/character_0.jpg", "actors"])


@pytest.mark.slow
def test_adapt_stylegan2(tmp_path, base):
    from adapt.training import adapt
    from tests.test_adapt_stylegan2 import settings

    config = settings(base, tmp_path / "inputs", steps=4, checkpoint_every=2, validate_every=2)

    def run(folder: Path):
        return call(adapt, config.model_copy(update={"out": folder / "toon.safetensors"}), resume="latest")

    def reset(folder: Path) -> None:  # no output and no checkpoint: the adaptation runs again from the start
        (folder / "toon.safetensors").unlink()
        shutil.rmtree(folder / "toon-adapt" / "checkpoints")

    command = Command(run, tmp_path / "adapt", reset, staging=["toon-adapt/.lock", "toon-adapt/checkpoints/step_0000004.tmp/",
                                                            "toon-adapt/checkpoints/step_0000001/"])
    check(command, tmp_path, ["toon.safetensors", "toon-adapt/checkpoints", "toon-adapt/validation",
                              "toon-adapt/checkpoints/step_0000004/state.safetensors"])
