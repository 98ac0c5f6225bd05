"""Training steps per second of the student on a dataset folder: pairs decoded once into memory
(the default for datasets that fit ``distill.cache_mb``) against streaming them from the shards
with 0 or 2 loader processes, measured in one run (ratios against streaming with 0 workers).

    .venv/bin/python benchmarks/train_throughput.py --data out/quickstart [--steps 60] [--set distill.size=256]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from distill.config import DistillConfig
from distill.train import train
from toonfactory.cli.student import load_training_sections


def steps_per_second(config: DistillConfig, data: Path) -> float:
    """Steps/s after the first 5 steps (start-up, cache filling and loader spawning excluded)."""
    times = []
    with tempfile.TemporaryDirectory() as out:
        train(config, data, Path(out), on_step=lambda step, total, record: times.append(time.perf_counter()))
    return (len(times) - 5) / (times[-1] - times[4])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="distill.FIELD=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # every run has val_fraction 0: no validation warnings
    sections, source = load_training_sections(args.data, None, args.overrides)
    base = sections.distill.model_dump()
    base.update(steps=args.steps + 5, val_fraction=0.0, save_every=10**6, val_every=10**6)
    rows = [("streamed, 0 workers", {"cache_mb": 0, "workers": 0}), ("streamed, 2 workers", {"cache_mb": 0, "workers": 2}),
            ("in memory", {})]
    config = DistillConfig(**base)
    print(f"settings: {source}; {config.size} px, batch {config.batch_size}, student ngf {config.student.ngf}, {args.steps} steps timed")
    print(f"| loader | steps/s | × streamed, 0 workers |\n|---|---:|---:|")
    baseline = None
    for name, change in rows:
        rate = steps_per_second(DistillConfig(**{**base, **change}), args.data)
        baseline = baseline or rate
        print(f"| {name} | {rate:.2f} | {rate / baseline:.2f} |")


if __name__ == "__main__":
    main()
