"""End to end on the quickstart recipe: layout, datasets, determinism, resume after SIGKILL."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toonfactory.recipe import load as load_recipe
from factory import executors
from factory.generate import RunResult, generate
from factory.sample import META_FIELDS
from tests.conftest import REPO

QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SMALL = ["output.count=12", "output.shard_size=2", "output.size=64", "tracking.mode=none"]


def make(out: Path, workers: int = 1, overrides=SMALL) -> RunResult:
    return generate(load_recipe(QUICKSTART, overrides), out, executors.choose("local", workers))


def cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "toonfactory", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def cli_torch(*args) -> tuple[int, str, bool]:
    """Run the command line to its end: exit status, stderr, and whether it imported torch (the seconds
    a small machine spends before a run can start)."""
    code = "import sys\nfrom toonfactory.cli import main\ntry:\n    main()\nfinally:\n    print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    return run.returncode, run.stderr, run.stdout.split()[-1] == "True"


def same_dataset(a: Path, b: Path) -> None:
    tars = sorted(p.name for p in (a / "shards").iterdir())
    assert tars == sorted(p.name for p in (b / "shards").iterdir())
    assert all(name.endswith(".tar") for name in tars)
    match, mismatch, errors = filecmp.cmpfiles(a / "shards", b / "shards", tars, shallow=False)
    assert not mismatch and not errors
    assert (a / "manifest.json").read_bytes() == (b / "manifest.json").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    result = make(out)
    assert not result.failed
    return out


def test_layout_manifest_and_sample_fields(reference):
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["counts"]["accepted"] == 12
    assert len(manifest["shards"]) == 6
    assert manifest["recipe"]["output"]["count"] == 12
    assert set(manifest["versions"]) >= {"python", "numpy", "mediapipe"}
    for shard in manifest["shards"]:
        stem = shard["name"].removesuffix(".tar")
        stats = json.loads((reference / "stats" / f"{stem}.json").read_text())
        assert stats["accepted"] == shard["samples"] == 2
        assert set(stats["seconds"]) == {"source", "faces", "warp", "teacher", "augment", "gates", "write"}
        assert (reference / "stats" / f"{stem}.done").is_file()
    from factory.dataset.reader import iter_pairs

    pairs = list(iter_pairs(reference))
    assert len(pairs) == 12 and len({p["key"] for p in pairs}) == 12
    for pair in pairs:
        assert pair["real"].shape == pair["toon"].shape == (64, 64, 3)
        assert set(pair["meta"]) == {"key", *META_FIELDS}
        assert pair["meta"]["faces"]["detector"] == "mediapipe"
        assert pair["meta"]["teacher"]["kind"] == "webtoon"
        assert pair["meta"]["warp"]["placement"] == "before_teacher"
        assert 0.0 <= pair["meta"]["warp"]["strength"] <= 0.6
        assert len(pair["meta"]["faces"]["landmarks"]) == 478
    assert len({p["real"].tobytes() for p in pairs}) == 12  # distinct pairs


def test_huggingface_datasets_reads_the_shards(reference):
    import datasets

    files = sorted(str(p) for p in (reference / "shards").glob("*.tar"))
    data = datasets.load_dataset("webdataset", data_files={"train": files}, split="train")
    assert data.num_rows == 12
    assert {"__key__", "real.png", "toon.png", "json"} <= set(data.column_names)
    row = data[0]
    assert row["real.png"].size == (64, 64)
    assert row["json"]["teacher"]["kind"] == "webtoon"


@pytest.mark.slow
def test_two_workers_make_the_same_bytes(reference, tmp_path):
    result = make(tmp_path, workers=2)
    assert not result.failed
    same_dataset(reference, tmp_path)


@pytest.mark.slow
def test_ray_on_two_cpus_makes_the_same_bytes(reference, tmp_path):
    ray = pytest.importorskip("ray")
    try:
        result = generate(load_recipe(QUICKSTART, SMALL), tmp_path, executors.choose("ray", 2))
    finally:
        ray.shutdown()
    assert not result.failed and len(result.made) == 6
    same_dataset(reference, tmp_path)


@pytest.mark.slow
def test_accelerate_launch_on_two_processes_makes_the_same_bytes(reference, tmp_path):
    launcher = Path(sys.executable).with_name("accelerate")
    args = [str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
            "no", "--dynamo_backend", "no", "-m", "toonfactory", "generate", str(QUICKSTART), "--out", str(tmp_path)]
    run = subprocess.run(args + [a for s in SMALL for a in ("--set", s)], capture_output=True, text=True, cwd=REPO,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    same_dataset(reference, tmp_path)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(reference, tmp_path):
    out = tmp_path / "killed"
    proc = cli("generate", QUICKSTART, "--out", out, *[a for s in SMALL for a in ("--set", s)])
    deadline = time.time() + 120
    while not (out / "stats" / "00000.done").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "stats").glob("*.done")))
    assert 1 <= done < 6, "the kill should land part-way through the run"
    assert not (out / "manifest.json").exists()
    rerun = cli("generate", QUICKSTART, "--out", out, *[a for s in SMALL for a in ("--set", s)])
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    same_dataset(reference, out)


def test_debris_is_redone_and_finished_shards_are_left_alone(reference, tmp_path):
    make(tmp_path)
    finished = tmp_path / "shards" / "00000.tar"
    before = finished.stat().st_mtime_ns
    (tmp_path / "stats" / "00003.done").unlink()  # shard 3 looks interrupted after its tar was renamed
    (tmp_path / "shards" / "00004.tar").write_bytes(b"half a tar")
    (tmp_path / "stats" / "00004.done").unlink()
    for leftover in ("shards/00005.tar", "stats/00005.json", "stats/00005.done"):  # killed while writing 5
        (tmp_path / leftover).unlink()
    (tmp_path / "shards" / "00005.tar.tmp").write_bytes(b"junk")
    result = make(tmp_path)
    assert sorted(s.shard for s in result.made) == ["00003", "00004", "00005"]
    assert finished.stat().st_mtime_ns == before
    assert not (tmp_path / "shards" / "00005.tar.tmp").exists()
    same_dataset(reference, tmp_path)


def test_raising_the_count_only_adds_shards(reference, tmp_path):
    make(tmp_path, overrides=[*SMALL[1:], "output.count=8"])
    result = make(tmp_path)
    assert sorted(s.shard for s in result.made) == ["00004", "00005"]
    same_dataset(reference, tmp_path)


def test_rerunning_a_finished_run_says_so_and_writes_nothing(reference, tmp_path):
    from factory.dataset.report import write_contact_sheet

    out = tmp_path / "copy"
    shutil.copytree(reference, out)
    write_contact_sheet(out)  # as `generate` leaves it (`make` writes no sheet; a re-run would make a missing one)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    code, err, torch = cli_torch("generate", QUICKSTART, "--out", out, *[a for s in SMALL for a in ("--set", s)])
    assert code == 0, err
    assert err.splitlines() == ["6 of 6 shards already done",
                                f"nothing to make: {out} holds the whole dataset (12 pairs); `toonfactory inspect {out}` "
                                "shows its counts"]
    assert not torch  # no pipeline, no report: nothing heavy to load
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    result = make(out)
    assert result.sealed_before and result.made == [] and result.skipped == 6


@pytest.mark.slow
def test_a_mistake_is_the_first_line_and_found_before_torch_loads(reference, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(reference, other)
    for args in ([tmp_path / "nothere.yaml", "--out", tmp_path / "new"],
                 [QUICKSTART, "--out", tmp_path / "new", "--set", "output.nope=1"],
                 [QUICKSTART, "--out", other, "--set", "seed=5", *[a for s in SMALL for a in ("--set", s)]]):
        code, err, torch = cli_torch("generate", *args)
        assert code == 2 and err.startswith("error: "), err  # no progress line before it
        assert not torch
    assert "different recipe" in err


def test_another_recipe_may_not_write_into_a_dataset(reference, tmp_path):
    make(tmp_path, overrides=[*SMALL[:-1], "output.count=2", "tracking.mode=none"])
    err = refused("generate", QUICKSTART, "--out", tmp_path, "--set", "seed=5", *[a for s in SMALL for a in ("--set", s)])
    assert "different recipe" in err


def refused(*args) -> str:
    """The one-line error (a UserError: the CLI's exit 2, as `test_a_mistake_is_the_first_line...` checks
    through a process) of a command run in this process, which has paid for its imports already."""
    from typer.testing import CliRunner

    from factory.errors import UserError
    from toonfactory.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, UserError) and result.exception.exit_code == 2, (result.exception, result.output)
    return str(result.exception)


def test_user_mistakes_exit_2_and_write_nothing(tmp_path):
    out = tmp_path / "out"
    err = refused("generate", QUICKSTART, "--out", out, "--set", f"source.folders=[{tmp_path / 'nowhere'}]",
                  "--set", "tracking.mode=none")
    assert "source.folders[0]" in err and "nowhere" in err
    assert not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert "not a folder" in refused("generate", QUICKSTART, "--out", blocker, "--set", "tracking.mode=none")
    no_model_recipe = tmp_path / "no_model.yaml"
    no_model_recipe.write_text(json.dumps({"source": {"kind": "samples"}, "tracking": {"mode": "none"},
                                           "teacher": {"kind": "cartoongan", "weights": str(tmp_path / "missing")}}))
    assert "missing" in refused("generate", no_model_recipe, "--out", out)
    assert not out.exists()
    for field, value in [("segment.mask.checkpoint", tmp_path / "nope.pth"),
                         ("segment.backgrounds.folder", tmp_path / "no_backgrounds")]:
        err = refused("generate", QUICKSTART, "--out", out, "--set", "segment.mask.kind=sam", "--set", f"{field}={value}",
                      "--set", "segment.mask.checkpoint=" + str(value if "checkpoint" in field else QUICKSTART))
        assert field in err, err
        assert not out.exists()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    for workers in ("1", "2"):  # with 2, the worker processes find it and the run says it in one line
        err = refused("generate", QUICKSTART, "--out", out, "--workers", workers, "--set", "tracking.mode=none",
                      "--set", "segment.mask.kind=sam", "--set", f"segment.mask.checkpoint={garbage}")
        assert "segment.mask.checkpoint" in err and "Traceback" not in err, err
        assert not out.exists()
    assert "output.size" in refused("generate", QUICKSTART, "--out", out, "--set", "output.size=1")
    assert not out.exists()


def test_validate_reports_every_missing_model_and_folder(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"source": {"kind": "folder", "path": "photos"},
                                  "teacher": {"kind": "cartoongan", "weights": "weights/hayao"}}))
    text = " ".join(refused("validate", recipe).split())
    assert f"source.path: {tmp_path / 'photos'} does not exist" in text  # relative to the recipe's folder
    assert f"teacher.weights: {tmp_path / 'weights' / 'hayao'} does not exist" in text
    (tmp_path / "photos").mkdir()
    (tmp_path / "weights" / "hayao").mkdir(parents=True)
    from typer.testing import CliRunner

    from toonfactory.cli import app

    assert CliRunner().invoke(app, ["validate", str(recipe)]).exit_code == 0


@pytest.mark.slow
def test_native_log_lines_stay_off_the_terminal_unless_verbose(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("GLOG_minloglevel", "TF_CPP_MIN_LOG_LEVEL")}
    one_shard = ["output.count=2", "output.shard_size=2", "output.size=64"]  # the lines come as the models load
    quiet = cli("generate", QUICKSTART, "--out", tmp_path / "q", *sum((["--set", o] for o in one_shard), []),
                "--set", "tracking.mode=offline", env=env)
    _, err = quiet.communicate(timeout=300)
    assert quiet.returncode == 0, err
    for noise in ("XNNPACK", "absl::InitializeLog", "inference_feedback_manager", "git repo"):
        assert noise not in err
    loud = cli("-v", "generate", QUICKSTART, "--out", tmp_path / "v", *sum((["--set", o] for o in one_shard), []),
               "--set", "tracking.mode=none", env=env)
    _, err = loud.communicate(timeout=300)
    assert loud.returncode == 0 and "XNNPACK" in err

