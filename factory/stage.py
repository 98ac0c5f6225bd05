"""The stage contract: a callable over a stream of samples (the datatrove shape).

A stage receives an iterator and yields samples; it may batch inside. A rejected sample is not an
exception: the stage calls ``sample.reject(reason)`` and yields it; the runner takes it out of the
stream and counts the reason in the shard's stats.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from factory.sample import Sample


class Stage:
    """Base class; subclasses override ``process`` (one sample) or ``__call__`` (to batch)."""

    name = "stage"

    def process(self, sample: Sample) -> Sample:
        raise NotImplementedError

    def __call__(self, samples: Iterable[Sample]) -> Iterator[Sample]:
        for sample in samples:
            yield self.process(sample)


def batched(samples: Iterable[Sample], size: int) -> Iterator[list[Sample]]:
    """Group a stream into lists of at most ``size`` samples."""
    batch: list[Sample] = []
    for sample in samples:
        batch.append(sample)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
