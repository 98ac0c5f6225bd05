"""Training steps per second of the student on a dataset folder: pairs decoded once into memory
(the default for datasets that fit ``distill.cache_mb``) against streaming them from the shards
with 0 or 2 loader processes, measured in one run (ratios against streaming with 0 workers).

    .venv/bin/python benchmarks/train_throughput.py --data out/quickstart [--steps 60] [--set distill.size=256]

``--precisions no,bf16,fp16 --sides 256,512`` prints instead steps/s and images/s of whole images at each side
(the pairs resized to it) in each mixed precision, against the first row: issue 23's GPU figures. On a
machine without CUDA, fp16 is reported as not run.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
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


def precision_table(base: dict, data: Path, sides: list[int], precisions: list[str]) -> None:
    """Steps/s of whole ``side`` px images in each mixed precision, against the first row."""
    import torch

    print(f"| side | precision | steps/s | images/s | × {sides[0]} px, {precisions[0]} |\n|---:|---|---:|---:|---:|")
    baseline = None
    for side in sides:
        for precision in precisions:
            if precision == "fp16" and not torch.cuda.is_available():
                print(f"| {side} | {precision} | not run: fp16 needs CUDA | | |")
                continue
            config = DistillConfig(**{**base, "size": side, "crop": None, "mixed_precision": precision})
            # a fresh process a row: accelerate keeps the first mixed precision it was given for the process
            with multiprocessing.get_context("spawn").Pool(1, logging.disable, (logging.WARNING,)) as pool:
                rate = pool.apply(steps_per_second, (config, data))
            baseline = baseline or rate
            print(f"| {side} | {precision} | {rate:.2f} | {rate * base['batch_size']:.1f} | {rate / baseline:.2f} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="distill.FIELD=VALUE")
    parser.add_argument("--precisions", help="comma list of no, bf16, fp16: the precision table instead of the loaders'")
    parser.add_argument("--sides", default="256,512", help="image sides of the precision table")
    args = parser.parse_args()
    precisions = args.precisions.split(",") if args.precisions else []
    if not set(precisions) <= {"no", "bf16", "fp16"}:
        parser.error("--precisions: choose among no, bf16, fp16")
    logging.basicConfig(level=logging.ERROR)  # every run has val_fraction 0: no validation warnings
    sections, source = load_training_sections(args.data, None, args.overrides)
    base = sections.distill.model_dump()
    base.update(steps=args.steps + 5, val_fraction=0.0, save_every=10**6, val_every=10**6)
    rows = [("streamed, 0 workers", {"cache_mb": 0, "workers": 0}), ("streamed, 2 workers", {"cache_mb": 0, "workers": 2}),
            ("in memory", {})]
    config = DistillConfig(**base)
    print(f"settings: {source}; {config.size} px, batch {config.batch_size}, student ngf {config.student.ngf}, {args.steps} steps timed")
    if precisions:
        return precision_table(base, args.data, [int(side) for side in args.sides.split(",")], precisions)
    print(f"| loader | steps/s | × streamed, 0 workers |\n|---|---:|---:|")
    baseline = None
    for name, change in rows:
        rate = steps_per_second(DistillConfig(**{**base, **change}), args.data)
        baseline = baseline or rate
        print(f"| {name} | {rate:.2f} | {rate / baseline:.2f} |")


if __name__ == "__main__":
    main()
