"""Shared test settings: assets beside the repo, quiet native libraries, no tracking by default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO.parent / "shared" / "assets"
QUICKSTART = REPO / "recipes" / "quickstart.yaml"
SMALL = ["output.count=4", "output.shard_size=2", "output.size=64", "tracking.mode=none"]


@pytest.fixture(autouse=True)
def no_stale_log_handlers():
    """The CLI run in-process points logging at the runner's stream, closed afterwards: drop it."""
    yield
    import logging

    logging.getLogger().handlers.clear()


@pytest.fixture
def disk_full_after_first_shard(monkeypatch) -> None:
    """Every shard after the first finds the disk full (ENOSPC) when it writes a sample."""
    import errno

    from factory.dataset.writer import ShardWriter

    write = ShardWriter.write

    def full_after_first_shard(self, sample):
        if self.task.index >= 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.paths["tmp"]))
        write(self, sample)

    monkeypatch.setattr(ShardWriter, "write", full_after_first_shard)


@pytest.fixture
def assets() -> Path:
    """The shared real images and weights; tests skip when a checkout has none."""
    if not ASSETS.is_dir():
        pytest.skip(f"shared assets not found at {ASSETS}")
    return ASSETS


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """The quickstart recipe at 64 px: 8 pairs in 2 shards, with a sharpness gate that rejects a few inputs."""
    from factory import executors
    from factory.generate import generate
    from toonfactory.recipe import load

    out = tmp_path_factory.mktemp("tiny") / "data"
    overrides = ["output.count=8", "output.shard_size=4", "output.size=64", "tracking.mode=none",
                 "gates.min_sharpness=2500"]
    result = generate(load(REPO / "recipes" / "quickstart.yaml", overrides), out, executors.choose("local", 1))
    assert not result.failed
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """The quickstart recipe with ``SMALL``: 4 pairs in 2 shards at 64 px, made once for the whole run (the
    tests that used one each made the same bytes three times). Tests copy it before they change anything."""
    from factory import executors
    from factory.generate import generate
    from toonfactory.recipe import load

    out = tmp_path_factory.mktemp("small") / "data"
    assert not generate(load(QUICKSTART, SMALL), out, executors.choose("local", 1)).failed
    return out
