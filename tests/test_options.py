"""Inference and casting options are typed: checked once, each mistake named by its option, and passed
whole (the command line, the library call and the demo build the same objects)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from casting.caster import CastConfig
from distill.config import InferConfig
from factory.errors import UserError


@pytest.mark.parametrize("options, said", [
    ({"detect_every": 0}, "--detect-every 0: Input should be greater than or equal to 1"),
    ({"mode": "faces"}, "--mode 'faces': Input should be 'whole' or 'face'"),
    ({"batch_size": 0, "max_pixels": 10}, "--batch-size 0: Input should be greater than or equal to 1; "
                                          "--max-pixels 10: Input should be greater than or equal to 65536"),
    ({"person_only": "blur"}, "--person-only 'blur': Input should be 'keep' or 'stylize'"),
    ({"mode": "face", "person_only": "keep"}, "--person-only works on whole frames (--mode whole)"),
    ({"mode": "whole", "assign": ["1=keep"]}, "--assign maps faces to models: it needs --mode face"),
    ({"mode": "face", "assign": ["1"]}, "--assign '1': expected TRACK_ID=MODEL or ACTOR=MODEL"),
    ({"max_frames": 0}, "--max-frames 0: Input should be greater than or equal to 1"),
    ({"detect_evry": 3}, "--detect-evry 3: Extra inputs are not permitted"),
])
def test_infer_options_are_checked_once_naming_the_option(options, said):
    with pytest.raises(UserError) as info:
        InferConfig.of(**options)
    assert said in str(info.value) and "\n" not in str(info.value)


def test_the_mode_left_open_is_said_by_the_options_or_else_by_the_student():
    assert InferConfig.of().mode is None
    assert InferConfig.of(assign=["1=keep"]).mode == "face" and InferConfig.of(person_only="keep").mode == "whole"
    assert InferConfig.of().for_student("face").mode == "face"
    assert InferConfig.of(mode="whole").for_student("face").mode == "whole"  # what the user said wins


def test_a_config_is_passed_whole_to_the_tracker():
    from distill.tracks import FaceTracks

    config = InferConfig.of(mode="face", detect_every=3, smooth=False, max_faces=2)
    tracks = FaceTracks(None, None, config, fps=25)
    assert (tracks.detect_every, tracks.smooth, tracks.max_faces) == (3, False, 2)
    assert config.tracks_videos and not InferConfig.of(mode="face", track=False).tracks_videos
    assert config.assignment.rules == {} and InferConfig.of(mode="face", assign=["2=keep"]).assignment.models == set()


def test_the_infer_command_names_a_mistaken_option_before_loading_anything(tmp_path):
    from toonfactory.cli import app

    result = CliRunner().invoke(app, ["infer", str(tmp_path / "no-model"), str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--detect-every", "0"])
    assert isinstance(result.exception, UserError) and result.exception.exit_code == 2, result.output
    assert str(result.exception) == "--detect-every 0: Input should be greater than or equal to 1"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("options, said", [
    ({"min_z": float("nan")}, "--min-z nan: Input should be a finite number"),
    ({"top": 0}, "--top 0: Input should be greater than or equal to 1"),
    ({"min_face": -5}, "--min-face -5: Input should be greater than or equal to 8"),
    ({"face": "left"}, "--face: 'left' is not largest, all, or a face number"),
    ({"where": ["gender"]}, "--where: 'gender' is not key=value"),
    ({"unwarp": "strong"}, "--unwarp: 'strong' is not auto"),
])
def test_cast_options_are_checked_once_naming_the_option(options, said):
    with pytest.raises(UserError, match="^" + said.replace("(", r"\(").replace("[", r"\[")):
        CastConfig.of(**options)
    assert CastConfig.of(face="2", where=["gender=female"], unwarp="auto:p.json").face == "2"


def test_the_demo_and_cast_rank_assemble_casting_the_same_way(monkeypatch, tmp_path):
    """Both go through ``casting.caster.load_caster``: the demo with the command's defaults."""
    from casting import caster
    from toonfactory.apps import demo

    seen = []
    monkeypatch.setattr(caster, "load_caster", lambda gallery, config=CastConfig(): seen.append((gallery, config)) or
                        type("Loaded", (), {"gallery": None})())
    demo.CastingDemo(tmp_path / "g", tmp_path)
    photo = tmp_path / "a.png"
    photo.write_bytes(b"")
    from toonfactory.cli import app

    CliRunner().invoke(app, ["cast", "rank", str(photo), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "r")])
    assert seen == [(tmp_path / "g", CastConfig()), (tmp_path / "g", CastConfig())]


def test_cast_rank_names_a_missing_image_before_reading_the_gallery(tmp_path):
    from toonfactory.cli import app

    result = CliRunner().invoke(app, ["cast", "rank", str(tmp_path / "missing.jpg"), "--gallery", str(tmp_path / "none"),
                                      "--out", str(tmp_path / "r")])
    assert isinstance(result.exception, UserError), result.output
    assert str(result.exception) == f"IMAGES {tmp_path / 'missing.jpg'}: not found"
