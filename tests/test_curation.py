"""Dataset curation: the card `datasets` reads, review marks, filtered versions, the embedding map, viewer tables."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from factory.dataset import review
from factory.dataset.facemap import embed_faces, group_of, write_map
from factory.dataset.reader import index_samples, read_image_field
from factory.dataset.versions import filter_dataset
from factory.errors import UserError
from factory.files import sha256_file


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tiny_dataset, tmp_path) -> Path:
    """A private copy of the session's tiny dataset (tests here write review files into it)."""
    return Path(shutil.copytree(tiny_dataset, tmp_path / "data"))


def test_the_card_parses_and_datasets_loads_the_folder_as_it_is(tiny_dataset):
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(tiny_dataset / "README.md")
    info = DatasetInfosDict.from_dataset_card_data(card.data)["default"]
    assert isinstance(info.features["real.png"], datasets.Image) and isinstance(info.features["toon.png"], datasets.Image)
    assert info.features["json"]["teacher"]["kind"] == datasets.Value("string")
    assert info.splits["train"].num_examples == 8
    assert card.data.license == "unknown" and card.data.configs[0]["data_files"][0]["path"] == "shards/*.tar"
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert manifest["recipe_hash"] in card.text and manifest["recipe"]["teacher"]["kind"] in card.text
    assert f"| blurry | {manifest['counts']['rejected']['blurry']} |" in card.text

    pairs = datasets.load_dataset(str(tiny_dataset), split="train")  # stats/*.json beside the shards are not data
    assert pairs.num_rows == 8 and pairs.features == info.features
    assert pairs[0]["real.png"].size == (64, 64) and pairs[0]["json"]["source"]["item"]


def test_marks_go_to_review_json_and_replace_notes(dataset):
    keys = [e.key for e in index_samples(dataset)]
    review.mark(dataset, keys[1], "smeared eyes")
    review.mark(dataset, keys[1], " double chin ")
    review.mark(dataset, keys[5])
    review.unmark(dataset, keys[5])
    record = json.loads((dataset / "review.json").read_text())
    assert record["format"] == review.FORMAT and set(record["marks"]) == {keys[1]}
    assert record["marks"][keys[1]]["note"] == "double chin"
    assert record["recipe_hash"] == json.loads((dataset / "manifest.json").read_text())["recipe_hash"]


def test_two_viewers_marking_at_once_lose_nothing(dataset):
    import threading

    keys = [e.key for e in index_samples(dataset)]
    threads = [threading.Thread(target=lambda k=k: review.mark(dataset, k, f"note {k}")) for k in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(review.read_review(dataset / "review.json")["marks"]) == set(keys)


def test_filter_writes_a_child_version_and_leaves_the_parent_untouched(dataset, tmp_path):
    keys = [e.key for e in index_samples(dataset)]
    review.mark(dataset, keys[0], "blurry mouth")
    review.mark(dataset, keys[6], "duplicate")
    before = snapshot(dataset)
    child = tmp_path / "child"
    manifest = filter_dataset(dataset, dataset / "review.json", child)
    assert snapshot(dataset) == before
    assert [e.key for e in index_samples(child)] == [k for k in keys if k not in (keys[0], keys[6])]
    assert manifest["counts"]["accepted"] == 6 and manifest["counts"]["rejected"]["review"] == 2
    assert manifest["parent"]["recipe_hash"] == manifest["recipe_hash"]
    assert manifest["parent"]["removed"] == [{"key": keys[0], "note": "blurry mouth"}, {"key": keys[6], "note": "duplicate"}]
    assert manifest["parent"]["manifest_sha256"] == sha256_file(dataset / "manifest.json")
    stats = json.loads((child / "stats" / "00000.json").read_text())
    assert {"key": keys[0], "reason": "review", "note": "blurry mouth"}.items() <= next(
        r for r in stats["rejects"] if r["reason"] == "review").items()
    kept = next(e for e in index_samples(child) if e.key == keys[1])
    original = next(e for e in index_samples(dataset) if e.key == keys[1])
    assert (read_image_field(child, kept, "toon") == read_image_field(dataset, original, "toon")).all()
    assert not list(tmp_path.glob(".child.*"))  # the staging folder was renamed into place

    import datasets

    assert datasets.load_dataset(str(child), split="train").num_rows == 6
    with pytest.raises(UserError, match="not an empty folder"):
        filter_dataset(dataset, dataset / "review.json", child)
    from factory import executors
    from factory.generate import generate
    from tests.conftest import REPO
    from toonfactory.recipe import load

    overrides = ["output.count=8", "output.shard_size=4", "output.size=64", "tracking.mode=none", "gates.min_sharpness=2500"]
    with pytest.raises(UserError, match="filtered from"):
        generate(load(REPO / "recipes" / "quickstart.yaml", overrides), child, executors.choose("local", 1))


def test_filter_refuses_reviews_of_other_datasets_and_files_that_are_not_reviews(dataset, tmp_path):
    path = dataset / "review.json"
    review.mark(dataset, index_samples(dataset)[0].key)
    record = json.loads(path.read_text())
    cases = {
        "another dataset": {**record, "recipe_hash": "0123456789abcdef"},
        "not in": {**record, "marks": {"99999_000000": {"note": ""}}},
        "field 'marks'": {**record, "marks": ["a", "b"]},
        "field 'format'": {"marks": {}},
    }
    for message, bad in cases.items():
        path.write_text(json.dumps(bad))
        with pytest.raises(UserError, match=message):
            filter_dataset(dataset, path, tmp_path / "out")
    path.write_bytes(pickle.dumps({"marks": {}}))
    with pytest.raises(UserError, match="not a readable JSON"):
        filter_dataset(dataset, path, tmp_path / "out")
    path.write_text(json.dumps(record))
    with pytest.raises(UserError, match="outside"):
        filter_dataset(dataset, path, dataset / "inner")
    with pytest.raises(UserError, match="--review"):
        filter_dataset(dataset, tmp_path / "missing.json", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))


def test_cli_filter_tracks_an_offline_child_dataset_version(dataset, tmp_path, monkeypatch):
    from toonfactory.cli import app, main

    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(tmp_path / "clearml.conf"))
    (tmp_path / "clearml.conf").write_text("")
    (dataset / "clearml").mkdir()
    (dataset / "clearml" / "dataset-offline-0123abcd.zip").write_bytes(b"")  # the parent's offline session
    monkeypatch.setattr("sys.argv", ["toonfactory", "dataset", "filter", str(dataset), "--out", str(tmp_path / "new")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2 and not (tmp_path / "new").exists()
    review.mark(dataset, index_samples(dataset)[2].key, "bad hands")
    run = CliRunner().invoke(app, ["dataset", "filter", str(dataset), "--out", str(tmp_path / "new"), "--tracking", "offline"])
    assert run.exit_code == 0, run.output
    sessions = sorted(p.name for p in (tmp_path / "new" / "clearml").iterdir())
    assert [s.split("-")[0] for s in sessions] == ["dataset", "task"]
    with zipfile.ZipFile(tmp_path / "new" / "clearml" / sessions[0]) as zf:
        task = json.loads(zf.read("task.json"))
    assert "ClearML parent: offline-0123abcd" in task["comment"] and "1 pair(s) removed in review" in task["comment"]


def test_groups_and_the_map_of_faces(tiny_dataset, tmp_path):
    assert group_of({"source": {"item": "skimage:astronaut"}}, "character") == "astronaut"
    assert group_of({"source": {"item": "/data/chars/sylvie/03.png"}}, "character") == "sylvie"
    assert group_of({"source": {"item": "/data/chars/sylvie/03.png"}}, "source") == "03.png"
    data = Path(shutil.copytree(tiny_dataset, tmp_path / "data"))
    result = write_map(data, by="character")
    assert result["feature"] == "dlib" and result["method"] == "t-SNE"
    assert {p["key"] for p in result["points"]} == {e.key for e in index_samples(data)}
    assert {"astronaut", "grace_hopper"} <= {p["group"] for p in result["points"]}
    assert result["png"].stat().st_size > 10_000
    # a face's nearest neighbour on the map is mostly the same person: the embedding sees identity
    import numpy as np

    points = np.array([(p["x"], p["y"]) for p in result["points"]])
    groups = [p["group"] for p in result["points"]]
    distance = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    shared = [i for i, g in enumerate(groups) if groups.count(g) > 1]
    same = [groups[int(distance[i].argmin())] == groups[i] for i in shared]
    assert same and np.mean(same) >= 0.75, list(zip(groups, same))
    entries = index_samples(data)[:3]
    for entry in entries:
        entry.meta = {"source": entry.meta["source"]}  # no face landmarks: the cheap image feature
    vectors, feature = embed_faces(data, entries)
    assert feature == "pixels" and vectors.shape[0] == 3


def test_viewer_tables_filter_sort_and_list_rejects(tiny_dataset):
    from toonfactory.apps.viewer import Viewer, select

    viewer = Viewer(tiny_dataset)
    table = viewer.table
    assert {"gates.sharpness", "faces.score", "warp.strength"} <= set(table.columns)
    middle = float(table["gates.sharpness"].median())
    sharp = select(table, score="gates.sharpness", low=middle, sort_by="gates.sharpness", descending=True)
    assert 0 < len(sharp) < len(table) and (sharp["gates.sharpness"] >= middle).all()
    assert list(sharp["gates.sharpness"]) == sorted(sharp["gates.sharpness"], reverse=True)
    assert set(select(table, source="skimage:astronaut")["character"]) == {"astronaut"}
    assert len(select(table, reviewed="marked")) == 0
    rejects = viewer.rejects
    assert len(rejects) == json.loads((tiny_dataset / "manifest.json").read_text())["counts"]["rejected"]["blurry"]
    assert set(rejects["reason"]) == {"blurry"} and rejects["item"].notna().all()
    tile = viewer.tile(table["key"][0])
    assert tile.shape == (64, 64 * 2 + 3, 3)
