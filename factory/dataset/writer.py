"""Shard writing: a tar under a temporary name, renamed when complete; stats, then a marker, last.

A shard whose marker exists and whose tar has the size and sha256 the marker records is finished and
is never touched again; anything else of that shard (a ``.tar.tmp``, a tar without marker or not
matching it) is the debris of an interrupted run and is made anew.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from factory.dataset.layout import shard_outputs
from factory.dataset.stats import ShardStats
from factory.files import open_new, refuse_link, sha256_file, subfolder, write_atomic
from factory.images import encode_png
from factory.plan import ShardTask
from factory.sample import Sample


def dumps(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class ShardWriter:
    """Writes one shard's samples in webdataset layout with fixed tar metadata (byte-reproducible)."""

    def __init__(self, out: Path, task: ShardTask):
        import webdataset as wds  # imports torch: only where a shard is written, not where a run is checked

        self.task = task
        self.paths = shard_outputs(out, task.name)
        for folder in ("shards", "stats"):
            subfolder(out, folder)
        for key in ("tar", "tmp", "stats", "marker"):
            self.paths[key].unlink(missing_ok=True)
        self._file = open_new(self.paths["tmp"])
        self._tar = wds.TarWriter(self._file, user="toonfactory", group="toonfactory", mtime=0.0, encoder=False)
        self.count = 0

    def write(self, sample: Sample) -> None:
        record = {"__key__": sample.key, "real.png": encode_png(sample.real), "toon.png": encode_png(sample.toon),
                  "json": dumps(sample.record())}
        if sample.mask is not None:
            record["mask.png"] = encode_png(sample.mask)
        self.write_record(record)

    def write_record(self, record: dict[str, bytes | str]) -> None:
        """One sample as already encoded files: ``__key__`` and bytes by field (``real.png``, ``json``, ...)."""
        with self._naming():
            self._tar.write(record)
        self.count += 1

    def finish(self, stats: ShardStats) -> None:
        """Close and rename the tar, then write the stats, then the completion marker."""
        with self._naming():
            self._tar.close()
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        record = {"size": self.task.size, "samples": self.count, "bytes": self.paths["tmp"].stat().st_size,
                  "sha256": sha256_file(self.paths["tmp"])}
        os.replace(self.paths["tmp"], refuse_link(self.paths["tar"]))
        write_atomic(self.paths["stats"], stats.to_json())  # stages in pipeline order
        write_atomic(self.paths["marker"], dumps(record))

    @contextlib.contextmanager
    def _naming(self):
        """A write into the tar that fails (a full disk) names the shard's file, as every other write does."""
        try:
            yield
        except OSError as exc:
            if exc.filename is None:
                exc.filename = str(self.paths["tmp"])
            raise

    def abort(self) -> None:
        """Drop the shard being written; a close that fails again (the disk is still full) is not reported
        twice, nor later by the interpreter."""
        for close in (self._tar.close, self._file.close):
            with contextlib.suppress(OSError):
                close()
        self.paths["tmp"].unlink(missing_ok=True)
