"""What a dataset folder holds, for people: merged counts, rejects and timings, and a contact sheet."""

from __future__ import annotations

from pathlib import Path

from factory.dataset.layout import read_json
from factory.dataset.stats import RunStats, ShardStats
from factory.errors import UserError

STAT_COUNTS = ("shards", "planned", "attempted", "accepted")


def shard_stats(out: Path) -> list[ShardStats]:
    """Every shard's stats record; a damaged one is named (``generate`` remakes its shard)."""
    records = []
    for path in sorted((out / "stats").glob("*.json")):
        record = ShardStats.parse(read_json(path), path.stem)
        if record is None:
            raise UserError(f"{path}: not a shard's stats record (counts, rejected, seconds); re-run "
                            "`toonfactory generate` on this folder to remake its shard")
        records.append(record)
    return records


def stats_tables(stats: RunStats) -> list:
    """Rich tables of merged stats: samples, rejects by reason, seconds per stage."""
    from rich.table import Table

    counts = Table(title="samples")
    for column in STAT_COUNTS:
        counts.add_column(column, justify="right")
    counts.add_row(*(str(getattr(stats, c)) for c in STAT_COUNTS))
    rejects = Table(title="rejects")
    rejects.add_column("reason")
    rejects.add_column("count", justify="right")
    for reason, n in sorted(stats.rejected.items(), key=lambda kv: -kv[1]) or [("none", 0)]:
        rejects.add_row(reason, str(n))
    timings = Table(title="seconds per stage")
    timings.add_column("stage")
    timings.add_column("total s", justify="right")
    timings.add_column("ms / candidate", justify="right")
    for stage, seconds in stats.seconds.items():
        timings.add_row(stage, f"{seconds:.2f}", f"{1000 * seconds / max(stats.attempted, 1):.1f}")
    return [counts, rejects, timings]


def write_contact_sheet(out: Path, count: int = 24) -> Path:
    """``out/contact_sheet.png``: the first ``count`` pairs, real | toon."""
    from factory.dataset.reader import iter_pairs
    from factory.dataset.sheets import pair_sheet
    from factory.files import write_atomic
    from factory.images import encode_png

    pairs = list(iter_pairs(out, limit=count))
    path = out / "contact_sheet.png"
    if pairs:
        write_atomic(path, encode_png(pair_sheet(pairs)))
    return path
