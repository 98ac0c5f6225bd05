"""Every pluggable kind is declared one way (a Strict config with a ``kind`` literal, a docstring and a
builder), its family made with ``one_of``, and all of them are listed in one place that
`toonfactory validate --kinds` prints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_args, get_origin

import pytest
from typer.testing import CliRunner

from factory.config import Strict, kind_name
from factory.errors import UserError
from toonfactory.kinds import FAMILIES, kind_rows

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("factory", "warping", "distill", "casting", "curate", "adapt", "toonfactory")


def test_every_kind_is_declared_the_same_way():
    assert set(FAMILIES) == {"teachers", "sources", "masks", "inpainters", "adapters", "detectors", "embedders",
                             "realifiers"}
    for family, (_, kinds) in FAMILIES.items():
        names = []
        for kind in kinds:
            field = kind.model_fields["kind"].annotation
            assert issubclass(kind, Strict) and get_origin(field) is Literal and len(get_args(field)) == 1, kind
            assert (kind.__dict__.get("__doc__") or "").strip(), f"{kind.__name__}: say in a docstring what it is"
            assert callable(getattr(kind, "build", None)), f"{kind.__name__} has no build()"
            names.append(kind_name(kind))
        assert len(set(names)) == len(names), (family, names)


def test_families_are_made_one_way():
    """A discriminated union of kinds is written only by ``factory.config.one_of``."""
    found = [f"{path.relative_to(REPO)}:{n}" for room in ROOMS for path in (REPO / room).rglob("*.py")
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"discriminator=|Union\[", line) and path != REPO / "factory" / "config.py"]
    assert found == []


def test_validate_lists_every_kind():
    from toonfactory.cli import app

    result = CliRunner().invoke(app, ["validate", "--kinds"])
    assert result.exit_code == 0, result.output
    for family, _, kind, _ in kind_rows():
        assert re.search(rf"{family}\s+│\s+{kind}\s+│", result.output), (family, kind)
    result = CliRunner().invoke(app, ["validate"])
    assert isinstance(result.exception, UserError) and "--kinds" in str(result.exception)


def test_a_detector_embedder_or_realifier_is_chosen_by_its_kind(tmp_path):
    from casting.realify import load_realifier
    from factory.faces import Cascade, build_detector
    from factory.models.embedding import build_embedder

    assert isinstance(build_detector("haar", min_score=1.0).backend, Cascade)
    with pytest.raises(UserError, match=r"faces.detector: bad option for the dlib detector: upsampel"):
        build_detector("dlib", upsampel=2)
    with pytest.raises(UserError, match=r"--embedder: 'x.bin' is neither 'dlib' nor an .onnx file"):
        build_embedder("x.bin")
    with pytest.raises(UserError, match=r"--realify: .*nope.onnx does not exist"):
        load_realifier(tmp_path / "nope.onnx")
