"""Planning: a run is a list of shards; a shard is one task and one retry unit.

Shard ``s`` must deliver ``size`` accepted samples. It tries candidates in a fixed order: first the
planned indices ``s*K .. s*K+size-1``, then, to replace rejects, indices from a range no other
shard uses. A candidate's key, seed and source item depend only on (shard, attempt), so any
process makes the same shard byte for byte, and raising ``output.count`` only adds shards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REPLACEMENT_BASE = 1 << 40


@dataclass(frozen=True)
class ShardTask:
    index: int
    size: int
    shard_size: int
    max_attempts: float

    @property
    def name(self) -> str:
        return f"{self.index:05d}"

    @property
    def attempts(self) -> int:
        return math.ceil(self.size * self.max_attempts)

    def candidate(self, attempt: int) -> tuple[str, int]:
        """(key, source index) of the shard's ``attempt``-th candidate."""
        if attempt < self.size:
            index = self.index * self.shard_size + attempt
        else:
            index = REPLACEMENT_BASE + self.index * self.shard_size * 8 + attempt
        return f"{self.index:05d}_{attempt:06d}", index


def plan(count: int, shard_size: int, max_attempts: float) -> list[ShardTask]:
    """Shards of ``shard_size`` samples (the last one may be smaller) covering ``count``."""
    shards = math.ceil(count / shard_size)
    return [ShardTask(s, min(shard_size, count - s * shard_size), shard_size, max_attempts) for s in range(shards)]


def assign(tasks: list[ShardTask], rank: int, world_size: int) -> list[ShardTask]:
    """The shards that process ``rank`` of ``world_size`` makes (round robin)."""
    return tasks[rank::world_size]
