"""Nothing lost, second round (issue 28): each test is one way an adversary lost a user's files or
wrote outside a folder. New interfaces are imported inside the tests, so on older code each test fails
on its own."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from factory.errors import UserError  # noqa: E402
from tests.conftest import QUICKSTART, SMALL  # noqa: E402 (small_dataset, the session's, is made with them)
from tests.test_cast import COLOURS, ColourEmbedder, SquareDetector, face_image, save  # noqa: E402

runner = CliRunner()


def app():
    from toonfactory.cli import app as root

    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def gallery_of(actors: Path, out: Path):
    from casting.gallery import collect_inputs, update_gallery

    inputs, attrs = collect_inputs(actors)
    return update_gallery(out, inputs, attrs, ColourEmbedder(), SquareDetector())


@pytest.fixture
def actors(tmp_path) -> Path:
    for name in ("ann", "bob"):
        save(face_image(COLOURS[name]), tmp_path / "actors" / name / "1.png")
    return tmp_path / "actors"


def test_a_gallery_never_deletes_a_users_photos_in_a_folder_it_did_not_make(actors, tmp_path):
    mine = tmp_path / "photos"
    (mine / "faces").mkdir(parents=True)
    (mine / "faces" / "family_photo_2019.jpg").write_bytes(b"family")
    (mine / "faces" / "wedding.jpg").write_bytes(b"wedding")
    with pytest.raises(UserError, match=r"not made by `toonfactory cast gallery`"):
        gallery_of(actors, mine)
    assert snapshot(mine) == {"faces/family_photo_2019.jpg": b"family", "faces/wedding.jpg": b"wedding"}
    gallery_of(actors, tmp_path / "g")  # its own folder: a file it did not make there is still kept
    (tmp_path / "g" / "faces" / "wedding.jpg").write_bytes(b"wedding")
    gallery_of(actors, tmp_path / "g")
    assert (tmp_path / "g" / "faces" / "wedding.jpg").read_bytes() == b"wedding"


def test_a_gallery_whose_face_leaves_its_folder_is_refused_and_nothing_is_copied(actors, tmp_path):
    from casting.gallery import Gallery

    gallery_of(actors, tmp_path / "g")
    meta_path = tmp_path / "g" / "gallery.json"
    meta = json.loads(meta_path.read_text())
    (tmp_path / "secret.txt").write_text("secret")
    meta["entries"][0]["face"] = "../../../../../../../../" + str(tmp_path / "secret.txt").lstrip("/")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"gallery.json.*leaves its folder"):
        Gallery.load(tmp_path / "g")
    meta["entries"] = [{"nonsense": 1}]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"gallery.json: malformed gallery"):
        Gallery.load(tmp_path / "g")


@pytest.mark.parametrize("damage", ["pickle", "cut"])
def test_a_gallery_whose_embeddings_are_a_pickle_or_cut_short_is_refused_naming_the_file(actors, tmp_path, damage):
    """Both came out of `cast gallery` and `cast rank` as a SafetensorError traceback."""
    import pickle

    from casting.gallery import Gallery

    gallery_of(actors, tmp_path / "g")
    (embeddings,) = (tmp_path / "g").glob("embeddings.*.safetensors")
    embeddings.write_bytes(pickle.dumps({"embeddings": [0.0]}) if damage == "pickle" else embeddings.read_bytes()[:100])
    with pytest.raises(UserError, match=rf"{embeddings.name}: cannot read the embeddings .*rebuild the gallery"):
        Gallery.load(tmp_path / "g")


def test_a_gallery_inside_its_actors_folder_is_refused(actors, tmp_path):
    for out in (actors, actors / "g"):
        result = runner.invoke(app(), ["cast", "gallery", str(actors), "--out", str(out)])
        assert isinstance(result.exception, UserError), result.output
        assert "input" in str(result.exception)
    assert not (actors / "g").exists() and not (actors / "faces").exists()



def _generate(data: Path):
    return runner.invoke(app(), ["generate", str(QUICKSTART), "--out", str(data), *[a for s in SMALL for a in ("--set", s)]])


def _mark_bad(data: Path):
    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark

    return mark(data, index_samples(data)[0].key, "blurry")


COMMANDS = {
    "inspect": lambda data: runner.invoke(app(), ["inspect", str(data)]),
    "dataset card": lambda data: runner.invoke(app(), ["dataset", "card", str(data)]),
    "generate": _generate,
    "dataset map": lambda data: runner.invoke(app(), ["dataset", "map", str(data)]),
    "mark bad": _mark_bad,
}
PLANTED = [("inspect", "contact_sheet.png"), ("dataset card", "README.md"), ("dataset card", "README.md.tmp"),
           ("generate", ".toonfactory.lock"), ("generate", "recipe.json"), ("generate", "recipe.json.tmp"),
           ("dataset map", "embedding_map.png"), ("mark bad", "review.json"), ("mark bad", "review.json.tmp")]


@pytest.mark.parametrize("command, name", PLANTED, ids=[f"{c}:{n}" for c, n in PLANTED])
def test_a_link_planted_at_a_name_a_command_writes_changes_nothing_outside_the_folder(small_dataset, tmp_path,
                                                                                      command, name):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    outside = tmp_path / "victim"
    outside.mkdir()
    victim = outside / "precious.json"  # valid JSON of the kind expected, so a reader would take it
    source = data / name.removesuffix(".tmp")
    victim.write_bytes(source.read_bytes() if source.is_file() else b'{"format": "toonfactory-review/1", "marks": {}}')
    (data / name).unlink(missing_ok=True)
    (data / name).symlink_to(victim)
    before = snapshot(outside)
    try:
        result = COMMANDS[command](data)
        error = getattr(result, "exception", None)
    except UserError as exc:
        error = exc
    assert snapshot(outside) == before
    assert (data / name).is_symlink()
    if error is not None:
        assert isinstance(error, UserError) and name in str(error), error


@pytest.mark.parametrize("command", ["warp", "style"])
def test_a_preview_never_writes_over_its_input_photo(tmp_path, command):
    import skimage.data

    from factory.teachers.webtoon_style import DEFAULT_STYLE

    photo = tmp_path / "a.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)  # a face, so the preview would be drawn
    before = photo.read_bytes()
    args = ["warp", "preview", str(photo), "--out", str(photo)] if command == "warp" else \
        ["style", "preview", str(photo), "--style", str(DEFAULT_STYLE), "--out", str(photo)]
    result = runner.invoke(app(), args)
    assert isinstance(result.exception, UserError) and "--out" in str(result.exception), result.output
    assert photo.read_bytes() == before


def tiny_video(path: Path, frames: int = 4) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (32, 32))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(real_image(rng, 32))
    writer.release()
    return path


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", ngf=4, depth=2, size=32)


def test_infer_never_replaces_a_users_files_beside_its_inputs(student, tmp_path):
    from distill.infer import infer

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(real_image(np.random.default_rng(1), 32)).save(imgs / "a.jpg")
    (imgs / "a.png").write_bytes(b"the user's own a.png")
    tiny_video(imgs / "clip.avi")
    (imgs / "clip.mp4").write_bytes(b"the user's own clip")
    (imgs / "clip.tracks.json").write_text('{"hand": "made"}')
    before = snapshot(imgs)
    for inputs in ([imgs / "a.jpg"], [imgs / "clip.avi"]):
        with pytest.raises(UserError, match=r"not made by `toonfactory infer`"):
            infer(student, inputs, imgs)
    with pytest.raises(UserError, match=r"inside the input"):
        infer(student, [imgs], imgs / "out")
    assert snapshot(imgs) == before
    infer(student, [imgs / "a.jpg"], tmp_path / "out")  # a folder it made takes later runs
    infer(student, [imgs / "clip.avi"], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == ["a.png", "clip.mp4"]


def test_a_video_cut_short_by_a_full_disk_is_not_kept_nor_counted(student, tmp_path, monkeypatch):
    import cv2

    from distill.infer import infer

    real = cv2.VideoWriter

    class DiskFillsAfterOneFrame:  # what ENOSPC does to OpenCV's writer: later frames are silently lost
        def __init__(self, *args):
            self.inner, self.frames = real(*args), 0

        def isOpened(self):
            return self.inner.isOpened()

        def write(self, frame):
            self.frames += 1
            if self.frames == 1:
                self.inner.write(frame)

        def release(self):
            self.inner.release()

    video = tiny_video(tmp_path / "clip.avi")
    monkeypatch.setattr(cv2, "VideoWriter", DiskFillsAfterOneFrame)
    with pytest.raises(UserError, match=r"clip.mp4: only 1 of 4 frames could be written"):
        infer(student, [video], tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.mp4")) and not list((tmp_path / "out").glob(".*tmp*"))


def add_members(tar_path: Path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(tar_path, "a") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_dataset_filter_refuses_shard_members_that_leave_the_folder_and_copies_none(small_dataset, tmp_path):
    import shutil

    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark
    from factory.dataset.versions import filter_dataset

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    mark(data, index_samples(data)[0].key, "bad")
    add_members(data / "shards" / "00001.tar", {"../../evil.json": b"{}", "/abs/path.json": b"{}"})
    with pytest.raises(UserError, match=r"00001.tar: member '\.\./\.\./evil.json' is not a sample file"):
        filter_dataset(data, data / "review.json", tmp_path / "clean")
    assert not (tmp_path / "clean").exists() and not list(tmp_path.glob(".clean.*"))
    assert not list(tmp_path.rglob("evil.json"))


def test_a_shard_member_declaring_gigabytes_is_refused_before_it_is_read(small_dataset, tmp_path):
    import shutil
    import tarfile

    from factory.dataset.reader import index_samples, iter_pairs

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    info = tarfile.TarInfo("k.json")
    info.size = 3 << 30  # a sparse shard: the header declares 3 GB, the file holds 64 KB
    (data / "shards" / "00000.tar").write_bytes(info.tobuf() + b"{" * 65536)
    for read in (lambda: index_samples(data), lambda: list(iter_pairs(data))):
        with pytest.raises(UserError, match=r"00000.tar: member 'k.json' declares 3221225472 bytes"):
            read()


def test_an_export_that_fails_its_parity_check_leaves_no_model_to_load(student, tmp_path):
    from distill.export import ExportMismatch, export

    for format in ("onnx", "torchscript"):
        with pytest.raises(ExportMismatch, match=r"differs from PyTorch"):
            export(student, format, tmp_path / "out", tolerance=-1.0)
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("*.pt"))
    for opset in (1, 99):
        with pytest.raises(UserError, match=rf"--opset {opset}: choose an ONNX opset from 7 to 20"):
            export(student, "onnx", tmp_path / "out2", opset=opset)
    with pytest.raises(UserError, match=r"is the checkpoint's own folder"):
        export(student, "safetensors", student)
    with pytest.raises(UserError, match=r"--tolerance nan: give the max abs difference"):  # NaN let every export pass
        export(student, "onnx", tmp_path / "out4", tolerance=float("nan"))
    assert not (tmp_path / "out4").exists()
    assert export(student, "onnx", tmp_path / "out3").name == "student.onnx"


def test_curate_refuses_an_out_inside_its_pages_and_a_folder_it_did_not_make(tmp_path):
    pages = tmp_path / "pg"
    pages.mkdir()
    Image.fromarray(real_image(np.random.default_rng(2), 64)).save(pages / "page1.png")
    before = snapshot(pages)
    for out in (pages, pages / "curated"):
        result = runner.invoke(app(), ["curate", "comics", str(pages), "--out", str(out), "--detector", "mediapipe",
                                       "--tracking", "none"])
        assert isinstance(result.exception, UserError) and "input" in str(result.exception), result.output
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = runner.invoke(app(), ["curate", "comics", str(pages), "--out", str(other), "--detector", "mediapipe",
                                   "--tracking", "none"])
    assert isinstance(result.exception, UserError) and "not made by `toonfactory curate`" in str(result.exception)
    assert snapshot(pages) == before and snapshot(other) == {"notes.txt": b"mine"}


@pytest.mark.slow
def test_a_page_is_never_shared_and_only_its_own_address_may_drive_it(small_dataset, tmp_path, monkeypatch):
    import socket
    import urllib.error
    import urllib.request

    from toonfactory.apps import launch
    from toonfactory.apps.viewer import build

    monkeypatch.setenv("GRADIO_SHARE", "true")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    page = build(small_dataset)
    launch(page, port, block=False)
    try:
        assert page.share is False and page.max_file_size is not None

        def status(**headers) -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/config", headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status
            except urllib.error.HTTPError as exc:
                return exc.code

        assert status() == 200
        assert status(Host="evil.example") == 403  # a DNS-rebinding page
        assert status(Origin="http://evil.example") == 403  # another site's script
        assert status(Origin=f"http://127.0.0.1:{port}") == 200
    finally:
        page.close()


def test_files_are_sized_before_they_are_read(small_dataset, tmp_path):
    import shutil

    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark, read_review
    from factory.images import BadImage, read_image

    junk = tmp_path / "junk.png"
    with open(junk, "wb") as handle:  # sparse: 2.6 GB declared, nothing on disk
        handle.truncate(2_600_000_000)
    with pytest.raises(BadImage, match=r"file_too_large"):
        read_image(junk)
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    with pytest.raises(UserError, match=r"at most 2000"):
        mark(data, index_samples(data)[0].key, "x" * 50_000_000)
    with open(data / "review.json", "wb") as handle:
        handle.truncate(100 << 20)
    with pytest.raises(UserError, match=r"review.json: .* over the 64 MB"):
        read_review(data / "review.json")


def test_a_manifest_whose_shard_leaves_the_folder_is_refused(small_dataset, tmp_path):
    import shutil

    from factory.dataset.card import write_card
    from factory.dataset.versions import filter_dataset

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    manifest["shards"][0]["name"] = "../../../../../../../../etc/passwd"
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "review.json").write_text(json.dumps({"format": "toonfactory-review/1", "recipe_hash": None, "marks": {}}))
    for call in (lambda: filter_dataset(data, data / "review.json", tmp_path / "clean"), lambda: write_card(data, manifest)):
        with pytest.raises(UserError, match=r"manifest.json: field 'shards': path .* leaves its folder"):
            call()
    assert not (tmp_path / "clean").exists()


def test_a_device_that_is_not_here_and_a_nan_threshold_are_one_line(student, tmp_path):
    import torch

    from distill.config import InferConfig
    from distill.infer import infer

    photo = tmp_path / "a.png"
    Image.fromarray(real_image(np.random.default_rng(3), 32)).save(photo)
    devices = ["bogus"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in devices:
        with pytest.raises(UserError, match=rf"--device {device}:"):
            infer(student, [photo], tmp_path / "out", InferConfig.of(device=device))
    result = runner.invoke(app(), ["cast", "rank", str(photo), "--gallery", str(tmp_path), "--out", str(tmp_path / "r"),
                                   "--min-z", "nan"])
    assert isinstance(result.exception, UserError) and "--min-z nan" in str(result.exception), result.output


def test_a_full_disk_or_read_only_folder_under_any_command_is_one_line(small_dataset, tmp_path, monkeypatch, capsys):
    import errno
    import shutil

    import factory.files
    from toonfactory.cli import main

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    for code in (errno.ENOSPC, errno.EROFS):
        def refuse(path, data, code=code):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(factory.files, "write_atomic", refuse)
        monkeypatch.setattr("factory.dataset.card.write_atomic", refuse)
        for command, written in ((["dataset", "card"], "README.md"), (["inspect"], "contact_sheet.png")):
            monkeypatch.setattr(sys, "argv", ["toonfactory", *command, str(data)])
            with pytest.raises(SystemExit) as exit_:
                main()
            assert exit_.value.code == 2
            message = capsys.readouterr().err.strip()
            assert "Traceback" not in message and str(data / written) in message and os.strerror(code) in message


def test_a_damaged_stats_file_is_named_and_the_next_generate_remakes_its_shard(small_dataset, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    (data / "stats" / "00000.json").write_text("{damaged")
    result = runner.invoke(app(), ["inspect", str(data)])
    assert isinstance(result.exception, UserError) and "00000.json" in str(result.exception), result.output
    result = _generate(data)
    assert result.exception is None, result.output
    assert json.loads((data / "stats" / "00000.json").read_text())["accepted"] >= 0
    assert runner.invoke(app(), ["inspect", str(data)]).exception is None


def test_an_unreadable_video_is_skipped_like_a_bad_image(student, tmp_path):
    from distill.infer import infer

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.mp4").write_bytes(b"not a video" * 100)
    Image.fromarray(real_image(np.random.default_rng(4), 32)).save(tmp_path / "in" / "a.png")
    summary = infer(student, [tmp_path / "in" / "broken.mp4", tmp_path / "in" / "a.png"], tmp_path / "out")
    assert (summary["skipped"], summary["written"]) == (1, 1)
    assert not (tmp_path / "out" / "broken.mp4").exists()


@pytest.mark.parametrize("text", ["name: 2024-01-01\n", "name: !!set {a: null}\n", "name: !!binary aGk=\n",
                                  "name: " + "[" * 5000 + "]" * 5000 + "\n"], ids=["date", "set", "binary", "deep"])
def test_recipe_yaml_of_other_types_or_too_deep_is_named(tmp_path, text):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    result = runner.invoke(app(), ["validate", str(recipe)])
    assert isinstance(result.exception, UserError) and str(recipe) in str(result.exception), result.output


def test_a_damaged_training_record_on_resume_is_named(tmp_path):
    from distill.train import TRAINING_RECORD, checkpoints, train
    from distill_fixtures import write_dataset
    from tests.test_reliability import tiny

    pairs = write_dataset(tmp_path / "pairs", shards=1, per_shard=4, size=32)
    train(tiny(), pairs, tmp_path / "run")
    record_path = checkpoints(tmp_path / "run")[-1] / TRAINING_RECORD
    record = json.loads(record_path.read_text())
    record["distill"], record["opt_g"] = "damaged", None
    record_path.write_text(json.dumps(record))
    with pytest.raises(UserError, match=rf"{TRAINING_RECORD}: damaged checkpoint record"):
        train(tiny(steps=2), pairs, tmp_path / "run", resume="latest")


def test_dataset_filter_cleans_a_killed_runs_partial_folder_and_refuses_a_concurrent_one(small_dataset, tmp_path):
    import fcntl
    import shutil

    from factory.dataset.reader import index_samples
    from factory.dataset.review import mark
    from factory.dataset.versions import filter_dataset

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    mark(data, index_samples(data)[0].key, "bad")
    (tmp_path / ".clean.x1y2.partial" / "shards").mkdir(parents=True)  # what a SIGKILLed filter left
    with open(tmp_path / ".clean.filter.lock", "w") as other:  # a filter into the same --out, running
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(UserError, match=r"--out .*clean: another `toonfactory dataset filter` is writing it"):
            filter_dataset(data, data / "review.json", tmp_path / "clean")
    filter_dataset(data, data / "review.json", tmp_path / "clean")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean", "data"]


def test_an_undecodable_image_in_a_shard_is_named_and_the_viewer_page_stays(small_dataset, tmp_path):
    import io
    import shutil
    import tarfile

    from factory.dataset.reader import iter_pairs
    from toonfactory.apps.viewer import Viewer

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    tar_path = data / "shards" / "00000.tar"
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    first = members[0][0].name.split(".", 1)[0]
    with tarfile.open(tar_path, "w") as tar:
        for member, payload in members:
            payload = b"\x89PNG garbage" if member.name == f"{first}.real.png" else payload
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    with pytest.raises(UserError, match=rf"00000.tar: member '{first}.real.png' is not a readable image"):
        list(iter_pairs(data))
    viewer = Viewer(data)
    tiles = viewer.page(viewer.table, 1, None)
    assert len(tiles) == len(viewer.table) and tiles[0][1].endswith(first)


def rewrite_member(tar_path: Path, name: str, change) -> None:
    import io
    import tarfile

    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for member, payload in members:
            payload = change(payload) if member.name == name else payload
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))


def test_json_records_that_disagree_on_a_type_are_named_by_the_card(small_dataset, tmp_path):
    import shutil
    import tarfile

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    tar_path = data / "shards" / "00001.tar"
    with tarfile.open(tar_path) as tar:
        name = next(m.name for m in tar.getmembers() if m.name.endswith(".json"))
    rewrite_member(tar_path, name, lambda payload: json.dumps({**json.loads(payload), "key": [1, 2]}).encode())
    result = runner.invoke(app(), ["dataset", "card", str(data)])
    assert isinstance(result.exception, UserError) and "disagree" in str(result.exception), result.output


def killed_while(args: list[str], debris: str, folder: Path) -> list[Path]:
    """Run `toonfactory ARGS` in a subprocess, SIGKILL it as soon as a file matching ``debris`` (a glob
    below ``folder``) exists, and return what it left matching."""
    import signal
    import subprocess
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "toonfactory", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None and not list(folder.glob(debris)):
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    return list(folder.glob(debris))


@pytest.mark.slow
def test_a_killed_infers_temporary_video_is_removed_by_the_next_run_and_a_users_file_kept(student, tmp_path, assets):
    from distill.infer import infer

    clip = assets / "video" / "short_hamilton_clip.mp4"
    out = tmp_path / "out"
    left = killed_while(["infer", str(student), str(clip), "--out", str(out), "--max-frames", "60"],
                        ".short_hamilton_clip.mp4.*.tmp.mp4", out)
    assert len(left) == 1 and (out / ".toonfactory.lock").exists()  # what the SIGKILL left: a half video, the lock
    (out / "notes.txt").write_text("mine")  # not the command's: kept
    (out / ".x.png.notmine.tmp.png").write_text("mine")
    photo = tmp_path / "a.png"
    Image.fromarray(real_image(np.random.default_rng(5), 32)).save(photo)
    assert infer(student, [photo], out)["written"] == 1
    assert sorted(p.name for p in out.iterdir()) == [".toonfactory.made-by", ".x.png.notmine.tmp.png", "a.png", "notes.txt"]


@pytest.mark.slow
def test_generate_removes_a_killed_runs_temporary_files_but_not_a_live_writers(tmp_path):
    from factory.files import staged

    data = tmp_path / "data"
    args = ["generate", str(QUICKSTART), "--out", str(data), *[a for s in SMALL for a in ("--set", s)]]
    assert killed_while(args, "shards/*.tar.tmp", data)
    (data / ".manifest.json.0123abcd.tmp.json").write_text("{")  # a killed writer's temporary manifest
    with staged(data / "contact_sheet.png") as live:  # `inspect` writing its sheet meanwhile
        result = _generate(data)
        assert result.exception is None, result.output
        assert live.exists()
    assert not list(data.rglob("*.tmp*")) and (data / "manifest.json").is_file()
    assert json.loads((data / "manifest.json").read_text())["counts"]["accepted"] >= 1


def test_train_removes_a_killed_runs_staging_checkpoint(tmp_path):
    from distill.train import checkpoints, train
    from distill_fixtures import write_dataset
    from tests.test_reliability import tiny

    pairs = write_dataset(tmp_path / "pairs", shards=1, per_shard=4, size=32)
    train(tiny(), pairs, tmp_path / "run")
    staging = tmp_path / "run" / "checkpoints" / "step_0000009.tmp"  # a save cut short by SIGKILL
    staging.mkdir()
    (staging / "student.safetensors").write_bytes(b"half")
    (tmp_path / "run" / "validation").mkdir(exist_ok=True)
    (tmp_path / "run" / "validation" / ".step_0000009.png.89abcdef.tmp.png").write_bytes(b"half")
    train(tiny(steps=2), pairs, tmp_path / "run", resume="latest")
    assert not staging.exists() and not list((tmp_path / "run").rglob("*.tmp*"))
    assert [p.name for p in checkpoints(tmp_path / "run")][-1] == "step_0000002"


def huge_frame_video(path: Path) -> Path:
    """A small MJPEG AVI whose container and frames declare 16000x16000 pixels (256 MP a frame)."""
    import struct

    tiny_video(path)
    data = bytearray(path.read_bytes())
    at = 0
    while (at := data.find(b"\xff\xc0", at)) != -1:  # each frame's JPEG start-of-frame: height, width
        struct.pack_into(">HH", data, at + 5, 16000, 16000)
        at += 2
    struct.pack_into("<II", data, data.find(b"avih") + 8 + 32, 16000, 16000)  # the AVI main header
    struct.pack_into("<ii", data, data.find(b"strf") + 8 + 4, 16000, 16000)  # the stream's bitmap header
    path.write_bytes(data)
    return path


def test_a_video_whose_frames_are_too_large_is_refused_before_a_frame_is_decoded(student, tmp_path, caplog):
    from distill.infer import infer
    from factory.sources.video import VideoSource, read_frame

    (tmp_path / "in").mkdir()
    video = huge_frame_video(tmp_path / "in" / "huge.avi")
    Image.fromarray(real_image(np.random.default_rng(6), 32)).save(tmp_path / "in" / "a.png")
    summary = infer(student, [video, tmp_path / "in" / "a.png"], tmp_path / "out")
    assert (summary["skipped"], summary["written"]) == (1, 1)
    assert f"{video}: skipped (frame_too_large: frames of 16000x16000 pixels > 64000000)" in caplog.text
    with pytest.raises(UserError, match=rf"{video}: frame_too_large: frames of 16000x16000"):
        VideoSource([video], every=1)
    assert read_frame(video, 0) is None


def test_json_records_whose_sections_are_of_other_types_are_shown_without_them(small_dataset, tmp_path):
    """A hostile record ("source": 3, "gates": "x", "faces": [1], a warp whose points are a string): the
    viewer's page and `dataset map` failed with an AttributeError traceback; the pair is shown without them."""
    import shutil
    import tarfile

    from toonfactory.apps.viewer import Viewer

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    tar_path = data / "shards" / "00000.tar"
    with tarfile.open(tar_path) as tar:
        name = next(m.name for m in tar.getmembers() if m.name.endswith(".json"))
    hostile = {"source": 3, "gates": "x", "faces": [1], "teacher": [], "warp": {"side": "real", "dst": "abc"}}
    rewrite_member(tar_path, name, lambda payload: json.dumps({**json.loads(payload), **hostile}).encode())
    viewer = Viewer(data)
    key = name.removesuffix(".json")
    assert viewer.table.set_index("key").loc[key, "source"] == "None" and viewer.tile(key).ndim == 3  # no source given
    result = runner.invoke(app(), ["dataset", "map", str(data)])
    assert result.exception is None and (data / "embedding_map.png").is_file(), result.output
    from factory.dataset.review import mark, unmark

    mark(data, key, "hostile")  # filtered out: its reject row has no source item (it was an AttributeError)
    result = runner.invoke(app(), ["dataset", "filter", str(data), "--out", str(tmp_path / "clean")])
    assert result.exception is None, result.output
    unmark(data, key)
    mark(data, next(k for k in viewer.entries if k != key), "blurry")  # kept: the card cannot type "source": 3
    result = runner.invoke(app(), ["dataset", "filter", str(data), "--out", str(tmp_path / "clean2")])
    assert isinstance(result.exception, UserError), result.output
    message = str(result.exception)  # named where the user's shards are, not in the hidden copy
    assert f"{data / 'shards'}: the samples' json records disagree" in message and ".partial" not in message, message


def test_an_export_killed_at_its_parity_check_leaves_no_model_to_load_and_the_next_run_cleans_up(student, tmp_path):
    """The issue's 'a SIGKILL leaves a student.onnx that infer loads': the process is killed while its
    parity check runs, the one moment a whole but unchecked file exists."""
    from distill.export import export
    from tests.test_nothing_lost_leftovers import limited

    out = tmp_path / "export"
    code, output = limited(None, "export", student, "--format", "onnx", "--out", out,
                           prelude="import os, distill.export\n"
                                   "distill.export._check = lambda *a, **k: os.kill(os.getpid(), 9)")
    assert code == -9, output[-2000:]
    left = [p.name for p in out.iterdir()]
    assert "student.onnx" not in left and any(n.startswith(".student.onnx.") for n in left), left
    assert export(student, "onnx", out).name == "student.onnx"
    assert sorted(p.name for p in out.iterdir()) == [".toonfactory.made-by", "student.json", "student.onnx"]


def test_a_dataset_card_edited_by_hand_is_kept_unless_overwritten(small_dataset, tmp_path):
    """The card asks for the licence to be written into it; `dataset card` then replaced the edit without a word."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    card = data / "README.md"
    assert runner.invoke(app(), ["dataset", "card", str(data)]).exit_code == 0  # its own card: written again
    edited = card.read_text().replace("license: unknown", "license: cc-by-4.0") + "Photos by us, CC BY 4.0.\n"
    card.write_text(edited)
    result = runner.invoke(app(), ["dataset", "card", str(data)])
    assert isinstance(result.exception, UserError) and "edited since toonfactory wrote it" in str(result.exception)
    assert card.read_text() == edited
    assert runner.invoke(app(), ["dataset", "card", str(data), "--overwrite"]).exit_code == 0
    assert "license: unknown" in card.read_text()


@pytest.mark.parametrize("damage, field", [(lambda m: m.pop("counts"), "counts"), (lambda m: m.update(recipe=None), "recipe"),
                                           (lambda m: m.pop("name"), "name"),
                                           (lambda m: m["counts"].update(planned="x"), "counts.planned")])
def test_a_manifest_missing_what_the_card_reads_is_named_by_dataset_card_and_filter(small_dataset, tmp_path, damage,
                                                                                     field):
    """Each came out of `dataset card` (and some of `dataset filter`) as a KeyError, TypeError or AttributeError traceback."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    manifest = json.loads((data / "manifest.json").read_text())
    damage(manifest)
    (data / "manifest.json").write_text(json.dumps(manifest))
    (data / "review.json").write_text(json.dumps({"format": "toonfactory-review/1", "recipe_hash": None, "marks": {}}))
    before = (data / "README.md").read_bytes()
    for command in (["card", str(data)], ["filter", str(data), "--out", str(tmp_path / "v2"), "--tracking", "none"]):
        result = runner.invoke(app(), ["dataset", *command])
        assert isinstance(result.exception, UserError), result.output
        assert str(result.exception).startswith(f"{data / 'manifest.json'}: field '{field}' is ")
    assert (data / "README.md").read_bytes() == before and not (tmp_path / "v2").exists()
