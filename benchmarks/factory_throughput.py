"""Quickstart throughput: pairs per second in one process, in N local worker processes, and on Ray.

    .venv/bin/python benchmarks/factory_throughput.py [--count 1000] [--size 256] [--workers 1 2] [--ray 2]

Each configuration makes the same recipe into a fresh folder (tracking off) and prints one row: the
wall rate (start-up and model loading included) and the steady-state rate (pairs of the shards
finished after the first one, over the time between the first and the last shard). Ratios are
against 1 worker measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from factory import executors
from factory.dataset.report import shard_stats
from factory.dataset.stats import RunStats
from factory.generate import generate
from toonfactory.recipe import load

QUICKSTART = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def measure(label: str, kind: str, workers: int, count: int, size: int, shard_size: int) -> dict:
    overrides = [f"output.count={count}", f"output.size={size}", f"output.shard_size={shard_size}", "tracking.mode=none"]
    finished: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()  # as the CLI does: executor start-up (processes, a Ray cluster), then the recipe
        executor = executors.choose(kind, workers)
        resolved = load(QUICKSTART, overrides)
        result = generate(resolved, Path(tmp) / "out", executor,
                          on_shard=lambda s: finished.append((time.perf_counter(), getattr(s, "accepted", 0))))
        wall = time.perf_counter() - start
        assert not result.failed, result.failed
        stats = RunStats.merge(shard_stats(Path(tmp) / "out"))
    (first, _), (last, _) = finished[0], finished[-1]
    steady = sum(n for _, n in finished[1:]) / (last - first) if last > first else float("nan")
    return {"label": label, "wall": wall, "start": first - start, "accepted": stats.accepted,
            "rate": stats.accepted / wall, "steady": steady}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--shard-size", type=int, default=25)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray", type=int, nargs="*", default=[2], help="Ray CPUs (none: skip Ray)")
    args = parser.parse_args()
    runs = [(f"local {w} worker{'s' if w > 1 else ''}", "local", w) for w in args.workers]
    runs += [(f"ray {c} CPUs", "ray", c) for c in args.ray]
    rows = [measure(*run, args.count, args.size, args.shard_size) for run in runs]
    base = rows[0]
    print(f"\nquickstart at {args.size} px, {args.count} pairs, shards of {args.shard_size}\n")
    header = ["executor", "pairs", "wall s", "first shard s", "pairs/s (wall)", "× wall", "pairs/s (steady)", "× steady"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [row["label"], row["accepted"], f"{row['wall']:.1f}", f"{row['start']:.1f}", f"{row['rate']:.2f}",
                 f"{row['rate'] / base['rate']:.2f}", f"{row['steady']:.2f}", f"{row['steady'] / base['steady']:.2f}"]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
