"""Off a terminal (a log file, a pipe) long commands print plain progress lines, and `train` first says
where its settings came from."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import real_image, write_checkpoint  # noqa: E402

from tests.conftest import REPO  # noqa: E402
from toonfactory.cli import app  # noqa: E402
from toonfactory.cli.common import ProgressLines  # noqa: E402

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
TINY = ["output.count=2", "output.shard_size=1", "output.size=64", "tracking.mode=none", "distill.size=64",
        "distill.steps=1", "distill.batch_size=2", "distill.workers=0", "distill.student.ngf=4", "export.formats=[safetensors]",
        "distill.crop=32"]
runner = CliRunner()


@pytest.fixture(autouse=True)
def not_a_terminal(monkeypatch):
    """The console judges a terminal by these first; a test's output is never one."""
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    yield
    logging.getLogger().handlers.clear()  # the CLI pointed logging at the runner's closed stream


def invoke(*args) -> list[str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stderr.splitlines()


def test_a_line_every_twentieth_and_at_the_total_and_one_at_the_end_without_a_total(capsys):
    lines = ProgressLines("train step", 40, "steps")
    for step in range(1, 41):
        lines.update(step, "l1=0.5")
    shown = capsys.readouterr().err.splitlines()
    assert [line.split()[2] for line in shown] == [f"{step}/40" for step in range(2, 41, 2)]
    assert shown[-1].startswith("train step 40/40 l1=0.5 ") and "steps/s ETA 0s" in shown[-1]
    lines = ProgressLines("infer frames", unit="frames")
    for frame in range(1, 4):
        lines.update(frame, "file 1/1")
    lines.finish()
    assert capsys.readouterr().err.startswith("infer frames 3 file 1/1 ")


def test_run_then_train_from_the_dataset_recipe_print_settings_and_progress_lines(tmp_path):
    out = tmp_path / "data"
    lines = invoke("run", QUICKSTART, "--out", out, *[a for s in TINY for a in ("--set", s)])
    assert "generate quickstart shards 1/2 pairs 1" in "\n".join(lines)
    assert any(line.startswith("generate quickstart shards 2/2 pairs 2 ") and "pairs/s" in line for line in lines)
    assert f"settings: distill from {QUICKSTART}, --set distill.size=64, --set distill.steps=1" in "\n".join(lines)
    assert any(line.startswith("train step 1/1 ") and " l1=" in line for line in lines)

    lines = invoke("run", QUICKSTART, "--out", out, *[a for s in TINY for a in ("--set", s)])  # make demo, again
    assert "2 of 2 shards already done" in lines and not any(line.startswith("generate ") for line in lines)
    assert f"student already trained: {out / 'student' / 'checkpoints' / 'step_0000001'} reached distill.steps 1; " \
           "nothing to train (raise distill.steps to train on)" in lines
    assert not any(line.startswith("train step") for line in lines)

    lines = invoke("train", "--data", out, "--out", tmp_path / "again", "--set", "distill.steps=3")
    assert lines[0] == (f"settings: distill from {out / 'recipe.json'}, --set distill.steps=3; "
                        "size 64, steps 3, batch 2, student ngf 4")
    steps = [line.split()[2] for line in lines if line.startswith("train step ")]
    assert steps == ["2/3", "3/3"]  # the rate counts from the first step on


def test_infer_and_curate_print_files_done(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "ckpt", ngf=4, depth=2, size=32)
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "in" / name), real_image(rng, 64))
    result = runner.invoke(app, ["infer", str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["written"] == 2  # progress stays off stdout
    assert result.stderr.splitlines()[-1].startswith("infer frames 2 file 2/2 ")

    lines = invoke("curate", "comics", tmp_path / "in", "--out", tmp_path / "curated", "--detector", "haar",
                   "--tracking", "none")
    assert [line.split()[2] for line in lines if line.startswith("curate pages ")] == ["1/2", "2/2"]
