"""A shard's stats record (``stats/{shard}.json``) and the run's totals merged from them, typed.

The record on disk is unchanged: counts, rejects by reason, a status row per rejected candidate and the
seconds each stage took (in pipeline order). Keys this version does not know are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError


class ShardStats(BaseModel):
    """What one shard did: every attempted candidate is accepted or rejected with its reason."""

    model_config = ConfigDict(extra="allow")

    shard: str
    planned: StrictInt
    attempted: StrictInt
    accepted: StrictInt
    rejected: dict[str, StrictInt]
    rejects: list[dict] = Field(default_factory=list)  # {"key", "item", "reason"} (+ "note" from a review)
    seconds: dict[str, StrictInt | StrictFloat]
    wall_seconds: StrictInt | StrictFloat | None = None

    @classmethod
    def parse(cls, record, shard: str) -> ShardStats | None:
        """The stats in a JSON record of shard ``shard``; None when it lacks the counts, rejects or seconds."""
        if not isinstance(record, dict):
            return None
        try:
            return cls.model_validate({"shard": shard, **record})
        except ValidationError:
            return None

    @classmethod
    def read(cls, path: Path) -> ShardStats | None:
        """The record at ``path``; None when absent, unreadable or not a shard's stats."""
        try:
            return cls.parse(json.loads(Path(path).read_text()), Path(path).stem)
        except (OSError, ValueError, RecursionError):
            return None

    def to_json(self) -> bytes:
        record = self.model_dump()
        if record["wall_seconds"] is None:
            del record["wall_seconds"]
        return json.dumps(record, indent=1).encode()


class RunStats(BaseModel):
    """Counts, rejects by reason and seconds by stage, summed over shards."""

    shards: int = 0
    planned: int = 0
    attempted: int = 0
    accepted: int = 0
    rejected: dict[str, int] = Field(default_factory=dict)
    seconds: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def merge(cls, stats: Iterable[ShardStats]) -> RunStats:
        total = cls()
        for shard in stats:
            total.shards += 1
            total.planned += shard.planned
            total.attempted += shard.attempted
            total.accepted += shard.accepted
            for reason, n in shard.rejected.items():
                total.rejected[reason] = total.rejected.get(reason, 0) + n
            for stage, s in shard.seconds.items():
                total.seconds[stage] = round(total.seconds.get(stage, 0.0) + s, 4)
        return total

    def counts(self) -> dict:
        """What a manifest records (no timings: identical data gives an identical manifest)."""
        return self.model_dump(include={"planned", "attempted", "accepted", "rejected"})
