"""Planning and seeding: keys and seeds depend only on (shard, attempt), never on who runs them."""

from __future__ import annotations

from factory import plan
from factory.sample import Sample, sample_seed


def test_shards_cover_the_count_with_a_smaller_last_shard():
    tasks = plan.plan(count=23, shard_size=10, max_attempts=2)
    assert [t.size for t in tasks] == [10, 10, 3]
    assert [t.name for t in tasks] == ["00000", "00001", "00002"]
    assert tasks[2].attempts == 6


def test_candidates_are_unique_across_shards_and_stable_when_count_grows():
    small = plan.plan(count=20, shard_size=10, max_attempts=3)
    large = plan.plan(count=50, shard_size=10, max_attempts=3)
    keys, indices = set(), set()
    for task in large:
        for attempt in range(task.attempts):
            key, index = task.candidate(attempt)
            assert "." not in key
            keys.add(key)
            indices.add(index)
    assert len(keys) == len(indices) == sum(t.attempts for t in large)
    for a, b in zip(small, large):
        assert [a.candidate(i) for i in range(a.attempts)] == [b.candidate(i) for i in range(b.attempts)]
    # the first pass walks the source in order; replacements come from a range of their own
    assert [large[1].candidate(i)[1] for i in range(3)] == [10, 11, 12]
    assert large[1].candidate(10)[1] >= plan.REPLACEMENT_BASE


def test_ranks_split_the_shards_exactly():
    tasks = plan.plan(count=95, shard_size=10, max_attempts=1)
    parts = [plan.assign(tasks, rank, 3) for rank in range(3)]
    assert sorted(t.index for part in parts for t in part) == list(range(10))


def test_sample_seeds_depend_on_recipe_seed_and_key_only():
    assert sample_seed(0, "00001_000002") == sample_seed(0, "00001_000002")
    assert sample_seed(0, "00001_000002") != sample_seed(1, "00001_000002")
    assert sample_seed(0, "00001_000002") != sample_seed(0, "00001_000003")
    a, b = Sample.create("k", 0, 7), Sample.create("k", 99, 7)
    assert a.rng("augment").random() == b.rng("augment").random()
    assert a.rng("augment").random() != a.rng("faces").random()
