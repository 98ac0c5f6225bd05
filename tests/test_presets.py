"""Presets that need no user weights run as they stand (on a tiny count)."""

from __future__ import annotations

import json

import pytest

from factory import recipe as recipes
from toonfactory.recipe import load as load_recipe
from factory import executors
from factory.generate import RunResult, generate
from factory.dataset.reader import iter_pairs
from tests.conftest import REPO

TINY = ["output.count=3", "output.shard_size=3", "output.size=64", "tracking.mode=none"]


@pytest.mark.parametrize("name", ["quickstart", "person-only", "realify-cartoonize"])
def test_preset_makes_pairs(name, tmp_path):
    result = generate(load_recipe(REPO / "recipes" / f"{name}.yaml", TINY), tmp_path)
    assert not result.failed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == 3
    pairs = list(iter_pairs(tmp_path))
    if name == "person-only":
        assert "mask.png" in manifest["fields"]
        assert all(p["mask"].shape == (64, 64) and p["meta"]["segment"] for p in pairs)


def test_person_only_is_refused_with_a_generative_source(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({
        "source": {"kind": "stylegan2", "checkpoint": str(tmp_path / "g.pt")},
        "segment": {"person_only": {"background": "keep"}},
        "teacher": {"kind": "cartoonize"},
    }))
    with pytest.raises(recipes.RecipeError, match="person_only needs an image source"):
        load_recipe(path)


def run(*args: str) -> None:
    """A command run to its end in this process (whose imports are paid already); it must succeed."""
    from typer.testing import CliRunner

    from toonfactory.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.exception, result.output[-2000:])


@pytest.mark.slow
def test_run_generates_trains_and_exports_then_resumes(tmp_path):
    settings = ["output.count=8", "output.shard_size=4", "output.size=64", "distill.size=64", "distill.steps=4",
                "distill.val_every=2", "distill.save_every=2", "distill.batch_size=2", "distill.crop=32", "tracking.mode=none"]
    args = ["run", str(REPO / "recipes" / "quickstart.yaml"), "--out", str(tmp_path)]
    args += [a for s in settings for a in ("--set", s)]
    run(*args)
    assert (tmp_path / "student" / "checkpoints" / "step_0000004" / "student.safetensors").is_file()
    onnx = tmp_path / "student" / "export" / "student.onnx"
    assert onnx.is_file() and (tmp_path / "student" / "export" / "student.safetensors").is_file()
    stamp = onnx.stat().st_mtime_ns
    shard = (tmp_path / "shards" / "00000.tar").stat().st_mtime_ns
    run(*args)
    assert (tmp_path / "shards" / "00000.tar").stat().st_mtime_ns == shard  # shards skipped
    assert not (tmp_path / "student" / "checkpoints" / "step_0000006").exists()  # training not redone
    assert onnx.stat().st_mtime_ns >= stamp


@pytest.mark.slow
def test_fullbody_run_exports_a_whole_frame_student_that_infer_runs_on_a_frame(tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from factory.images import encode_png, read_image
    from tests.distill_fixtures import write_checkpoint
    from toonfactory.cli import app

    settings = ["output.count=2", "output.shard_size=2", "output.size=128", "distill.size=64", "distill.crop=32",
                "distill.steps=2", "distill.val_every=2", "distill.save_every=2", "distill.batch_size=2", "tracking.mode=none"]
    command = ["run", str(REPO / "recipes" / "fullbody.yaml"), "--out", str(tmp_path / "run")]
    missing = CliRunner().invoke(app, command + ["--set", f"distill.init={tmp_path / 'no_face_student'}"])
    assert missing.exception.exit_code == 2 and "distill.init:" in str(missing.exception)
    assert "does not exist" in str(missing.exception)
    assert not (tmp_path / "run" / "shards").exists()  # checked before any pair is made
    face_student = write_checkpoint(tmp_path / "face_student", ngf=16, depth=5, size=64, residual=False)
    settings.append(f"distill.init={face_student}")  # the recipe starts from make demo's face student
    run(*command, *[a for s in settings for a in ("--set", s)])
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["recipe"]["output"]["frame"] == "scene" and manifest["counts"]["accepted"] == 2
    onnx = tmp_path / "run" / "student" / "export" / "student.onnx"
    assert onnx.is_file()
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)  # a 16:9 frame, not a multiple of 32
    (tmp_path / "frame.png").write_bytes(encode_png(frame))
    run("infer", str(onnx), str(tmp_path / "frame.png"), "--mode", "whole", "--out", str(tmp_path / "out"))
    drawn = read_image(next((tmp_path / "out").rglob("frame*.png")))
    assert drawn.shape == frame.shape and not np.array_equal(drawn, frame)
