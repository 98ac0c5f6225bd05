"""ClearML tracking: no-op mode, offline session zips in the output folder, failures as warnings, --remote."""

from __future__ import annotations

import json
import logging
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from factory import tracking
from factory.dataset.stats import RunStats
from factory.errors import UserError
from factory.recipe import TrackingConfig

STATS = RunStats(attempted=10, accepted=7, rejected={"no_face": 2, "blur": 1}, seconds={"faces": 1.5, "teacher": 3.0})
RECIPE = {"name": "tiny", "seed": 3, "output": {"count": 7, "size": 64}}


@pytest.fixture(autouse=True)
def isolated_clearml(tmp_path, monkeypatch):
    """ClearML's files and configuration live in tmp_path; no server credentials in the environment."""
    home = tmp_path / "home"
    home.mkdir()
    conf = tmp_path / "clearml.conf"
    conf.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CLEARML_CACHE_DIR", str(tmp_path / "clearml-cache"))
    monkeypatch.setenv("CLEARML_CONFIG_FILE", str(conf))
    for name in ("HOST", "ACCESS_KEY", "SECRET_KEY"):
        monkeypatch.delenv(f"CLEARML_API_{name}", raising=False)
        monkeypatch.delenv(f"TRAINS_API_{name}", raising=False)
    return conf


@pytest.fixture
def dataset_dir(tmp_path):
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    for i in range(2):
        (out / "shards" / f"{i:06d}.tar").write_bytes(bytes([i]) * 512)
    (out / "manifest.json").write_text("{}")
    return out


def start(out: Path, **kwargs):
    config = kwargs.pop("config", TrackingConfig(mode="offline"))
    return tracking.start_tracking(config, name="tiny", recipe=RECIPE, recipe_hash="feedbeef", out_dir=out, **kwargs)


def read_zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_none_mode_is_a_noop(tmp_path):
    out = tmp_path / "out"
    tracker = start(out, config=TrackingConfig(mode="none"))
    assert type(tracker) is tracking.Tracker
    tracker.report_stats(STATS)
    tracker.report_image("sheet", "pairs", np.zeros((8, 8, 3), np.uint8))
    assert tracker.register_dataset(out, "tiny", []) is None
    tracker.close()
    assert not out.exists() and tracker.sessions == []


def test_stats_become_counts_reject_rates_and_stage_seconds():
    rows = {(title, series): value for title, series, value in tracking.stats_scalars(STATS)}
    assert rows[("counts", "accepted")] == 7 and rows[("counts", "rejected")] == 3
    assert rows[("reject rate", "no_face")] == pytest.approx(0.2)
    assert rows[("reject rate", "all")] == pytest.approx(0.3)
    assert rows[("seconds per stage", "teacher")] == 3.0
    assert ("reject rate", "all") not in dict.fromkeys(
        (t, s) for t, s, _ in tracking.stats_scalars(RunStats()))


def test_offline_session_zips_hold_recipe_scalars_image_and_dataset(tmp_path, dataset_dir):
    from clearml import Task

    png = tmp_path / "sheet.png"
    Image.fromarray(np.full((16, 32, 3), 200, np.uint8)).save(png)
    with start(dataset_dir) as tracker:
        assert tracker.mode == "offline"
        tracker.report_stats(STATS)
        tracker.report_scalar("loss", "l1", 0.5, iteration=4)
        tracker.report_image("dataset", "contact sheet", np.full((16, 32, 3), 90, np.uint8))
        tracker.report_image("dataset", "from file", png)
        files = sorted(p for p in dataset_dir.rglob("*") if p.is_file())
        assert tracker.register_dataset(dataset_dir, "tiny", files) is None  # offline: written at close

    kept = sorted(p.name for p in (dataset_dir / "clearml").iterdir())
    assert [n.split("-")[0] for n in kept] == ["dataset", "task"] and tracker.sessions[0].name.startswith("task-")
    task_zip = read_zip(tracker.sessions[0])
    task_json = json.loads(task_zip["task.json"])
    assert task_json["type"] == "data_processing" and task_json["name"] == "tiny"
    assert "recipe-feedbeef" in task_json["tags"]
    assert task_json["hyperparams"]["run"]["recipe_hash"]["value"] == "feedbeef"
    recipe_text = task_json["configuration"]["recipe"]["value"]
    assert "seed" in recipe_text and "count" in recipe_text
    events = [e for line in task_zip["metrics.jsonl"].splitlines() for e in json.loads(line)]
    scalars = {(e["metric"], e["variant"], e["iter"]): e["value"] for e in events if e["type"] == "training_stats_scalar"}
    assert scalars[("counts", "accepted", 0)] == 7.0
    assert scalars[("reject rate", "no_face", 0)] == pytest.approx(0.2)
    assert scalars[("seconds per stage", "faces", 0)] == 1.5
    assert scalars[("loss", "l1", 4)] == 0.5
    images = {(e["metric"], e["variant"]) for e in events if e["type"] == "training_debug_image"}
    assert images == {("dataset", "contact sheet"), ("dataset", "from file")}
    assert sum(name.endswith((".jpeg", ".png")) for name in task_zip) == 2

    dataset_zip = read_zip(tracker.sessions[1])
    state = json.loads(next(v for k, v in dataset_zip.items() if k.endswith("state.json")))
    entries = {e["relative_path"]: e for e in state["dataset_file_entries"]}
    assert set(entries) == {"manifest.json", "shards/000000.tar", "shards/000001.tar"}
    assert entries["shards/000001.tar"]["size"] == 512 and len(entries["shards/000001.tar"]["hash"]) == 64
    assert tracker.dataset_id in tracker.sessions[1].name

    assert not any((tmp_path / "clearml-cache" / "offline").iterdir())  # cached copies dropped
    assert Task.current_task() is None
    assert "_report_subprocess_enabled" not in Task.__dict__  # ClearML's own setting restored
    assert [t for t in threading.enumerate() if not t.daemon] == [threading.main_thread()]


def test_clearml_failures_are_warnings(dataset_dir, monkeypatch, caplog):
    from clearml import Task

    def broken_init(*args, **kwargs):
        raise RuntimeError("clearml is broken")

    with monkeypatch.context() as patch:
        patch.setattr(Task, "init", broken_init)
        with caplog.at_level(logging.WARNING, logger="factory.tracking"):
            tracker = start(dataset_dir)
    assert type(tracker) is tracking.Tracker
    assert "clearml is broken" in caplog.text

    caplog.clear()
    tracker = start(dataset_dir)
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="factory.tracking"):
        patch.setattr(tracker.task, "get_logger", broken_init)
        tracker.report_stats(STATS)
        tracker.report_image("dataset", "sheet", np.zeros((8, 8, 3), np.uint8))
    tracker.close()
    scalars = len(tracking.stats_scalars(STATS))
    assert caplog.text.count("clearml is broken") == scalars + 1  # one warning per failed call
    assert [p.name.split("-")[0] for p in tracker.sessions] == ["task"]


def test_remote_without_server_is_a_user_error_before_writing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="no ClearML server configured.*CLEARML_API_HOST"):
        start(out, config=TrackingConfig(mode="auto"), remote_queue="gpu")
    with pytest.raises(UserError, match="tracking.mode is 'none'"):
        start(out, config=TrackingConfig(mode="none"), remote_queue="gpu")
    assert not out.exists()


def test_server_detection_from_env_and_conf(isolated_clearml, monkeypatch):
    assert tracking.server_credentials() is None
    isolated_clearml.write_text(
        'api { api_server: "http://127.0.0.1:9"\n credentials { access_key: "AK", secret_key: "SK" } }\n')
    assert tracking.server_credentials() == ("http://127.0.0.1:9", "AK", "SK")
    isolated_clearml.write_text("")
    monkeypatch.setenv("CLEARML_API_HOST", "http://127.0.0.1:9")
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "AK")
    assert tracking.server_credentials() is None  # a host without both keys is not a server
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "SK")
    assert tracking.server_credentials() == ("http://127.0.0.1:9", "AK", "SK")


@pytest.fixture
def failing_server(monkeypatch):
    """A configured server that answers every request with HTTP 503 (ClearML itself would retry it for minutes)."""

    class Unavailable(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv("CLEARML_API_HOST", host)
    monkeypatch.setenv("CLEARML_API_ACCESS_KEY", "AK")
    monkeypatch.setenv("CLEARML_API_SECRET_KEY", "SK")
    yield host
    server.shutdown()
    server.server_close()
    thread.join()


def test_unusable_server_falls_back_to_offline_and_refuses_remote(tmp_path, failing_server, caplog):
    with caplog.at_level(logging.WARNING, logger="factory.tracking"):
        tracker = start(tmp_path / "out", config=TrackingConfig(mode="server"))
        tracker.close()
    assert tracker.mode == "offline" and tracker.sessions[0].is_file()
    assert "answers HTTP 503" in caplog.text
    assert "does not answer" in tracking.server_problem("http://127.0.0.1:9", "AK", "SK")  # nothing listens there
    with pytest.raises(UserError, match="ClearML server unusable.*503"):
        start(tmp_path / "remote", config=TrackingConfig(mode="auto"), remote_queue="gpu")
    assert not (tmp_path / "remote").exists()


def test_import_needs_sessions_and_a_server(dataset_dir):
    with pytest.raises(UserError, match="no ClearML offline sessions"):
        tracking.import_offline_sessions(dataset_dir)
    (dataset_dir / "clearml").mkdir()
    (dataset_dir / "clearml" / "task-offline-0.zip").write_bytes(b"")
    with pytest.raises(UserError, match="no ClearML server configured"):
        tracking.import_offline_sessions(dataset_dir)


def test_cli_import_without_server_exits_2(dataset_dir, monkeypatch, capsys):
    from toonfactory import cli

    (dataset_dir / "clearml").mkdir()
    (dataset_dir / "clearml" / "task-offline-0.zip").write_bytes(b"")
    monkeypatch.setattr("sys.argv", ["toonfactory", "clearml-import", str(dataset_dir)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    assert "no ClearML server configured" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
