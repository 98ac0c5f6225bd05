"""Quickstart throughput: pairs per second and seconds per stage with 1 and N worker processes.

    .venv/bin/python benchmarks/factory_throughput.py [--count 100] [--size 256] [--workers 1 2]

Each configuration makes the same recipe into a fresh folder (model loading included, tracking
off) and prints one table; the speed-up column is against 1 worker measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from factory import dataset, runner
from factory import recipe as recipes

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def measure(count: int, size: int, shard_size: int, workers: int) -> dict:
    overrides = [f"output.count={count}", f"output.size={size}", f"output.shard_size={shard_size}", "tracking.mode=none"]
    resolved = recipes.load(QUICKSTART, overrides)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = runner.run(resolved, Path(tmp) / "out", workers=workers)
        wall = time.perf_counter() - start
        assert not result.failed, result.failed
        stats = dataset.merge_stats(dataset.shard_stats(Path(tmp) / "out"))
    return {"workers": workers, "wall": wall, "accepted": stats["accepted"], "attempted": stats["attempted"],
            "seconds": stats["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    rows = [measure(args.count, args.size, args.shard_size, w) for w in args.workers]
    stages = list(rows[0]["seconds"])
    base = rows[0]["accepted"] / rows[0]["wall"]
    print(f"\nquickstart at {args.size} px, {args.count} pairs, shards of {args.shard_size} (wall time includes model loading)\n")
    header = ["workers", "pairs", "wall s", "pairs/s", "speed-up"] + [f"{s} ms" for s in stages]
    print(" | ".join(f"{h:>10}" for h in header))
    print("-" * (13 * len(header)))
    for row in rows:
        rate = row["accepted"] / row["wall"]
        per = [1000 * row["seconds"].get(s, 0.0) / row["attempted"] for s in stages]
        cells = [row["workers"], row["accepted"], f"{row['wall']:.1f}", f"{rate:.2f}", f"{rate / base:.2f}x"]
        print(" | ".join(f"{c:>10}" for c in cells + [f"{p:.1f}" for p in per]))
    print("\nstage columns: process-seconds per candidate sample, summed over workers")


if __name__ == "__main__":
    main()
