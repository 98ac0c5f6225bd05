"""Derived dataset versions: a new folder without the pairs a review marked bad; the original is untouched.

Shards keep their names and the writer's conventions (same tar metadata, ``.tar.tmp`` renamed, stats,
then the marker); each removed pair becomes a reject with reason ``review`` (and its note) in the
shard's stats. The whole version is built in a hidden folder beside ``--out`` and renamed into
place at the end, so an interrupted filter leaves no half-made dataset, and the manifest names its
parent (path, recipe hash, manifest checksum, removed keys with their notes).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from factory.dataset.layout import MANIFEST, RECIPE, check_manifest, read_manifest, shard_outputs
from factory.dataset.manifest import seal
from factory.dataset.reader import manifest_shards, read_member, shard_members
from factory.dataset.review import read_review
from factory.dataset.stats import ShardStats
from factory.dataset.writer import ShardWriter
from factory.errors import UserError
from factory.files import DiskFull, refuse_link, sha256_file, write_atomic
from factory.plan import ShardTask

REVIEW_REASON = "review"


def _check(src: Path, review_file: Path, out: Path) -> tuple[dict, dict]:
    manifest = read_manifest(src)
    if manifest is None:
        raise UserError(f"{src / MANIFEST}: not found; only a finished dataset (made by `toonfactory generate`) "
                        "can be filtered")
    check_manifest(src, manifest)
    manifest_shards(src, manifest)
    if not review_file.is_file():
        raise UserError(f"--review {review_file}: not found (mark pairs in `toonfactory view {src}` first)")
    review = read_review(review_file)
    if review["recipe_hash"] not in (None, manifest["recipe_hash"]):
        raise UserError(f"--review {review_file}: field 'recipe_hash' is {review['recipe_hash']}, but {src} was made "
                        f"by recipe {manifest['recipe_hash']}; this review belongs to another dataset")
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise UserError(f"--out {out}: must be a new folder outside {src} (the original stays untouched)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty folder; a new version goes to a new folder")
    parent = next((p for p in out.absolute().parents if p.exists()), Path("/"))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {parent} is not writable")
    return manifest, review


def _samples(tar_path: Path):
    """(key, {field: bytes}) for each sample of a shard, in order (members checked by ``shard_members``)."""
    key, files = None, {}
    for tar, member, name, ext in shard_members(tar_path):
        if key is not None and name != key:
            yield key, files
            files = {}
        key = name
        files[ext] = read_member(tar_path, tar, member)
    if key is not None:
        yield key, files


def _source_item(record: bytes | None) -> str | None:
    """A removed pair's ``source.item`` for its reject row; None when its record has none (or is damaged)."""
    try:
        meta = json.loads(record or b"{}")
    except (ValueError, RecursionError):
        return None
    source = meta.get("source") if isinstance(meta, dict) else None
    item = source.get("item") if isinstance(source, dict) else None
    return item if isinstance(item, str) else None


def _filter_shard(src: Path, staging: Path, shard: dict, marks: dict) -> list[str]:
    """Copy one shard without the marked pairs (bytes as they are); its stats gain the review rejects."""
    name = shard["name"].removesuffix(".tar")
    tar_path = src / "shards" / shard["name"]
    keys = dict.fromkeys(key for _, _, key, _ in shard_members(tar_path))
    removed = [key for key in keys if key in marks]
    parent_stats = ShardStats.read(shard_outputs(src, name)["stats"])
    if parent_stats is None:
        raise UserError(f"{shard_outputs(src, name)['stats']}: not a shard's stats record (counts, rejected, seconds)")
    writer = ShardWriter(staging, ShardTask(int(name), len(keys) - len(removed), parent_stats.planned, 1.0))
    items = {}
    try:
        for key, files in _samples(tar_path):
            if key in marks:
                items[key] = _source_item(files.get("json"))
            else:
                writer.write_record({"__key__": key, **files})
        rejected = dict(parent_stats.rejected)
        if removed:
            rejected[REVIEW_REASON] = rejected.get(REVIEW_REASON, 0) + len(removed)
        rows = [{"key": key, "item": items.get(key), "reason": REVIEW_REASON, "note": marks[key].get("note", "")}
                for key in removed]
        writer.finish(parent_stats.model_copy(update={"accepted": writer.count, "rejected": rejected,
                                                      "rejects": parent_stats.rejects + rows}))
    except BaseException:  # a full disk: the tar is closed once, here, not again by the interpreter at exit
        writer.abort()
        raise
    return removed


def filter_dataset(src: Path, review_file: Path, out: Path) -> dict:
    """Write a new version of ``src`` into ``out`` without the pairs ``review_file`` marks; its manifest."""
    src, review_file, out = Path(src), Path(review_file), Path(out)
    manifest, review = _check(src, review_file, out)
    marks = review["marks"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with _building(out) as staging, _named_in(src, staging):
        removed = [key for shard in manifest["shards"] for key in _filter_shard(src, staging, shard, marks)]
        unknown = sorted(set(marks) - set(removed))
        if unknown:
            raise UserError(f"--review {review_file}: field 'marks' names {len(unknown)} key(s) not in {src} "
                            f"({', '.join(unknown[:5])}); this review belongs to another dataset")
        write_atomic(staging / RECIPE, (src / RECIPE).read_bytes())
        parent = {"path": str(src.resolve()), "recipe_hash": manifest["recipe_hash"],
                  "manifest_sha256": sha256_file(src / MANIFEST), "review_sha256": sha256_file(review_file),
                  "removed": [{"key": key, "note": marks[key].get("note", "")} for key in sorted(removed)]}
        child = seal(staging, name=manifest["name"], recipe_hash=manifest["recipe_hash"], recipe=manifest["recipe"],
                     shard_names=[s["name"].removesuffix(".tar") for s in manifest["shards"]], parent=parent)
        try:
            if out.exists():
                out.rmdir()  # checked empty above; a folder filled meanwhile makes rmdir fail, and nothing is lost
            os.rename(staging, out)
        except OSError as exc:
            raise UserError(f"--out {out}: filled by something else meanwhile ({exc.strerror}); this version "
                            "was not kept") from None
    return child


@contextlib.contextmanager
def _named_in(src: Path, staging: Path):
    """A mistake found in the copy (a record the card cannot type) is named in ``src``, where the user's
    files are, not in the hidden folder that is removed; a full disk still names the file it could not write."""
    try:
        yield
    except UserError as exc:
        if isinstance(exc, DiskFull) or str(staging) not in str(exc):
            raise
        raise UserError(str(exc).replace(str(staging), str(src))) from None


@contextlib.contextmanager
def _building(out: Path):
    """The hidden folder a version of ``out`` is built in, beside it, while this run holds
    ``.OUT.filter.lock`` (a second filter into ``out`` is refused); partial folders a killed run left
    are removed first, and this run's is removed unless it was renamed into place."""
    lock_path = refuse_link(out.parent / f".{out.name}.filter.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    held = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(fd).st_ino == os.stat(lock_path).st_ino  # not a file its last holder removed
        except (BlockingIOError, FileNotFoundError):
            held = False
        if not held:
            raise UserError(f"--out {out}: another `toonfactory dataset filter` is writing it; wait for it to finish")
        for stale in out.parent.glob(f".{out.name}.*.partial"):  # only a lock holder makes them: a killed run's
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the version is an ordinary folder
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # gone already when renamed into place
    finally:
        if held:
            lock_path.unlink(missing_ok=True)
        os.close(fd)
