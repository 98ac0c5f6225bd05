"""A shard's stats, typed: the record on disk reads back as it was written (older records and unknown keys
included), runs merge by one rule, and every executor's per-shard template reads a finished shard back."""

from __future__ import annotations

import json

import pytest

from factory.dataset.stats import RunStats, ShardStats
from factory.errors import UserError

RECORD = {"shard": "00000", "planned": 2, "attempted": 3, "accepted": 2, "rejected": {"no_face": 1},
          "rejects": [{"key": "k1", "item": "a.jpg", "reason": "no_face"}],
          "seconds": {"source": 0.5, "faces": 1.25, "write": 0.1}, "wall_seconds": 2.0}


def test_a_record_on_disk_reads_back_and_writes_the_same_json(tmp_path):
    path = tmp_path / "00000.json"
    path.write_text(json.dumps({**RECORD, "added_later": {"x": 1}}, indent=1))
    stats = ShardStats.read(path)
    assert stats.accepted == 2 and stats.rejected == {"no_face": 1} and list(stats.seconds) == ["source", "faces", "write"]
    assert json.loads(stats.to_json()) == {**RECORD, "added_later": {"x": 1}}  # keys it does not know are kept
    older = {k: v for k, v in RECORD.items() if k not in ("shard", "wall_seconds", "rejects")}
    path.write_text(json.dumps(older))
    assert ShardStats.read(path).shard == "00000" and ShardStats.read(path).rejects == []


@pytest.mark.parametrize("damage", [{"accepted": "2"}, {"rejected": []}, {"seconds": None}, {"planned": 1.5}])
def test_a_damaged_record_is_not_a_shards_stats(tmp_path, damage):
    from factory.dataset.report import shard_stats

    (tmp_path / "stats").mkdir()
    (tmp_path / "stats" / "00000.json").write_text(json.dumps({**RECORD, **damage}))
    assert ShardStats.read(tmp_path / "stats" / "00000.json") is None
    with pytest.raises(UserError, match=r"00000.json: not a shard's stats record"):
        shard_stats(tmp_path)


def test_runs_merge_counts_rejects_and_seconds():
    second = ShardStats(**{**RECORD, "shard": "00001", "rejected": {"no_face": 2, "blurry": 1}, "attempted": 5,
                           "seconds": {"source": 0.25, "faces": 0.75, "write": 0.2}})
    total = RunStats.merge([ShardStats(**RECORD), second])
    assert (total.shards, total.planned, total.attempted, total.accepted) == (2, 4, 8, 4)
    assert total.rejected == {"no_face": 3, "blurry": 1}
    assert total.seconds == {"source": 0.75, "faces": 2.0, "write": 0.3}
    assert total.counts() == {"planned": 4, "attempted": 8, "accepted": 4, "rejected": {"no_face": 3, "blurry": 1}}
    assert RunStats.merge([]) == RunStats()


def test_the_per_shard_template_reads_a_finished_shard_back_and_turns_errors_into_failures(tiny_dataset, tmp_path):
    """A retried task (Ray retries one whose worker died after it finished) is not made again."""
    import shutil

    from factory.dataset.layout import finished_shards
    from factory.plan import ShardTask
    from factory.shard import ShardFailure, run_shard

    out = tmp_path / "copy"
    shutil.copytree(tiny_dataset, out)
    index, marker = sorted(finished_shards(out).items())[0]
    task = ShardTask(index, marker["size"], marker["size"], 1.0)
    stats = run_shard(None, task, out, 0)  # no pipeline: nothing is made
    assert isinstance(stats, ShardStats) and stats == ShardStats.read(out / "stats" / f"{task.name}.json")

    class Broken:
        source = None
        stages = []

    failure = run_shard(Broken(), ShardTask(99, 2, 2, 1.0), tmp_path / "other", 0)
    assert isinstance(failure, ShardFailure) and failure.shard == "00099" and "Traceback" in failure.error
