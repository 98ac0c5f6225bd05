"""The demo's students: with --whole, the whole-frame student draws the whole and person-only outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from distill.infer import Student, to_input, to_uint8
from factory.images import read_image
from toonfactory.apps.demo import MODES, StudentDemo

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import write_checkpoint  # noqa: E402


def frame() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (72, 100, 3), dtype=np.uint8)  # no face: face mode returns it as it is


def whole_frame(model: Path, image: np.ndarray) -> np.ndarray:
    student = Student(model, device="cpu")
    return to_uint8(student(to_input(image, student.multiple)[None])[0], *image.shape[:2])


def test_whole_frame_student_draws_the_whole_output_and_the_face_student_the_faces(tmp_path):
    face = write_checkpoint(tmp_path / "face", seed=0)
    whole = write_checkpoint(tmp_path / "whole", seed=1)
    image = frame()
    demo = StudentDemo(face, whole)
    try:
        results = demo.run_image(image)
        assert set(results) == set(MODES)
        drawn = read_image(results["whole"][0])
        assert np.abs(drawn.astype(int) - whole_frame(whole, image)).max() <= 1
        assert np.abs(drawn.astype(int) - whole_frame(face, image)).max() > 10  # not the face student's frame
        assert demo.student_for("face") is demo.student and demo.student_for("person only") is demo.whole
        assert demo.describe("whole") == "whole (whole-frame student)" and demo.describe("face") == "face (face student)"
        assert np.array_equal(read_image(results["face"][0]), image)
    finally:
        demo.work.cleanup()


def test_one_student_draws_every_output_without_whole(tmp_path):
    face = write_checkpoint(tmp_path / "face", seed=0)
    image = frame()
    demo = StudentDemo(face)
    try:
        results = demo.run_image(image)
        assert np.abs(read_image(results["whole"][0]).astype(int) - whole_frame(face, image)).max() <= 1
        assert all(demo.student_for(name) is demo.student for name in MODES)
        assert demo.describe("whole") == "whole"
    finally:
        demo.work.cleanup()
