"""The recipe schema: every problem reported with its YAML path, overrides, hashing."""

from __future__ import annotations

import pytest
import yaml

from toonfactory.recipe import load as load_recipe
from factory.errors import RecipeError, UserError
from tests.conftest import REPO

GOOD = {"source": {"kind": "samples"}, "teacher": {"kind": "cartoonize"}}


def write(tmp_path, data) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_problem_is_reported_with_its_path(tmp_path):
    bad = {
        "source": {"kind": "folder"},
        "teacher": {"kind": "cartoonize", "colors": 1, "surprise": True},
        "output": {"size": 8},
        "faces": {"detector": "anime"},
        "mystery": 1,
    }
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, bad))
    problems = "\n".join(info.value.problems)
    assert "source.path: Field required" in problems
    assert "teacher.colors: Input should be greater than or equal to 2" in problems
    assert "teacher.surprise: Extra inputs are not permitted" in problems
    assert "output.size: Input should be greater than or equal to 32" in problems
    assert "faces: the anime detector needs `cascade`" in problems
    assert "mystery: Extra inputs are not permitted" in problems
    assert len(info.value.problems) == 6


def test_unknown_kind_names_the_choices(tmp_path):
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, {**GOOD, "teacher": {"kind": "magic"}}))
    assert info.value.problems[0].startswith("teacher: Input tag 'magic'")
    assert "cartoonize" in info.value.problems[0]


def test_overrides_parse_yaml_values_and_create_sections(tmp_path):
    path = write(tmp_path, GOOD)
    resolved = load_recipe(path, ["output.count=1000", "output.shard_size=100", "augment.enabled=false",
                                   "faces.jitter=0.1"])
    assert resolved.recipe.output.count == 1000
    assert resolved.recipe.output.shard_size == 100
    assert resolved.recipe.augment.enabled is False
    assert resolved.recipe.faces.jitter == 0.1
    with pytest.raises(UserError, match="expected FIELD=VALUE"):
        load_recipe(path, ["output.count"])
    with pytest.raises(RecipeError, match="output.count: Input should be a valid integer"):
        load_recipe(path, ["output.count=many"])


def test_hash_ignores_count_and_tracking_but_not_content(tmp_path):
    path = write(tmp_path, GOOD)
    base = load_recipe(path).hash
    assert load_recipe(path, ["output.count=5000", "tracking.mode=none"]).hash == base
    assert load_recipe(path, ["seed=1"]).hash != base
    assert load_recipe(path, ["teacher.colors=4"]).hash != base


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("source: [unclosed\n")
    with pytest.raises(RecipeError, match=r"\(yaml\)"):
        load_recipe(broken)


def test_every_shipped_recipe_validates():
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        load_recipe(path)


def test_realify_recipes_train_the_way_back():
    """A realifier's student turns drawings into photos; pairs alone do not say so (distill defaults to real2toon)."""
    paths = sorted((REPO / "recipes").glob("realify-*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        assert load_recipe(path).recipe.distill.direction == "toon2real", path.name


def test_validate_command_exits_2_listing_problems(tmp_path):
    """In this process (its imports paid already): the problem is a UserError, which the command line's
    ``main`` turns into exit 2 (test_engine checks that step through a process)."""
    from typer.testing import CliRunner

    from toonfactory.cli import app

    path = write(tmp_path, {**GOOD, "teacher": {"kind": "cartoonize", "colors": 100}})
    run = CliRunner().invoke(app, ["validate", str(path)])
    assert isinstance(run.exception, UserError) and run.exception.exit_code == 2, run.output
    assert "teacher.colors" in str(run.exception)
    ok = CliRunner().invoke(app, ["validate", str(path), "--set", "teacher.colors=8"])
    assert ok.exit_code == 0, ok.output


def test_toonify_must_share_the_sources_generator(tmp_path):
    data = {"source": {"kind": "stylegan2", "checkpoint": "a.pt"},
            "teacher": {"kind": "toonify", "base": "b.pt", "toon": "t.pt"}}
    with pytest.raises(RecipeError, match="teacher.base: toonify needs"):
        load_recipe(write(tmp_path, data))
    data["teacher"]["base"] = "a.pt"
    load_recipe(write(tmp_path, data))


def test_making_pairs_does_not_need_the_paths_of_later_rooms(tmp_path):
    from factory.recipe import check_paths

    resolved = load_recipe(write(tmp_path, {**GOOD, "distill": {"init": "face_student/student.safetensors"}}))
    check_paths(resolved, factory_only=True)  # generate: the student to start from may come later
    with pytest.raises(RecipeError, match=r"distill.init: .*face_student/student.safetensors does not exist"):
        check_paths(resolved)  # run, validate: the whole recipe


def test_an_export_opset_the_exporter_refuses_is_refused_by_the_recipe(tmp_path):
    """export.opset 21 validated, then `toonfactory run` trained the whole student and failed at its export."""
    path = write(tmp_path, {**GOOD, "export": {}})
    with pytest.raises(RecipeError, match=r"export\.opset: Input should be less than or equal to 20"):
        load_recipe(path, ["export.opset=21"])
    assert load_recipe(path, ["export.opset=20"]).recipe.export.opset == 20
