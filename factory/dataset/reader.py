"""Reading a dataset folder back: its shard files and manifest, and its pairs as images."""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from factory.dataset.layout import read_manifest
from factory.errors import UserError
from factory.files import inside
from factory.images import BadImage, decode_png

MAX_MEMBER_BYTES = 64 << 20  # one sample file (an image, its json); a 4096² RGBA PNG is at most 64 MB


def shard_files(data_dir: Path, option: str = "--data") -> list[Path]:
    """The dataset's finished shard files, sorted; a folder without any is the user's mistake."""
    shards = sorted((Path(data_dir) / "shards").glob("*.tar"))
    if not shards:
        raise UserError(f"{Path(data_dir) / 'shards'}: no *.tar shards; {option} must be a dataset folder made by "
                        "`toonfactory generate`")
    return shards


def shard_members(tar_path: Path, option: str = "") -> Iterator[tuple[tarfile.TarFile, tarfile.TarInfo, str, str]]:
    """(tar, member, key, ext) for each member of a shard, in order. The one way every reader walks a
    shard: a member that is not a plain file named ``KEY.EXT`` (a folder, a link, a device, an absolute
    or ``..`` name) or is over ``MAX_MEMBER_BYTES``, and a damaged tar, are refused by name."""
    where = f"{tar_path}: {option}: " if option else f"{tar_path}: "
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or "/" in name or "\\" in name or name.startswith(".") or "." not in name:
                    raise UserError(f"{where}member {name!r} is not a sample file (KEY.EXT); the shard was not "
                                    "made by `toonfactory generate`")
                if member.size > MAX_MEMBER_BYTES:
                    raise UserError(f"{where}member {name!r} declares {member.size} bytes, over the "
                                    f"{MAX_MEMBER_BYTES >> 20} MB a sample file may have")
                key, ext = name.split(".", 1)
                yield tar, member, key, ext
    except (tarfile.TarError, OSError, EOFError) as exc:
        said = " ".join(str(exc).split())[:300]  # tarfile says why per compression method, a line each
        raise UserError(f"{where}not a readable tar shard ({said})") from None


def read_member(tar_path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The bytes of one member :func:`shard_members` gave (a truncated shard is named)."""
    try:
        return tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{tar_path}: member {member.name!r} cannot be read ({' '.join(str(exc).split())[:300]})") from None


def read_record(tar_path: Path, member: tarfile.TarInfo, data: bytes) -> dict:
    """A sample's json record; damaged json is named with its shard and member."""
    try:
        record = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"{tar_path}: member {member.name!r} is not a JSON record ({type(exc).__name__})") from None
    if not isinstance(record, dict):
        raise UserError(f"{tar_path}: member {member.name!r} is not a JSON object")
    return record


def check_shards(data_dir: Path, option: str = "--data") -> list[Path]:
    """The dataset's shards, each walked once through :func:`shard_members`: a damaged or hostile
    shard is refused by name before anything reads it."""
    shards = shard_files(data_dir, option)
    for path in shards:
        for _ in shard_members(path, option):
            pass
    return shards


def manifest_shards(data_dir: Path, manifest: dict) -> list[Path]:
    """The shard files the manifest lists, each resolved inside ``DIR/shards``: a name that leaves it
    (absolute, ``..``, a link out) or a damaged list is refused, naming the manifest."""
    where = f"{Path(data_dir) / 'manifest.json'}: field 'shards'"
    try:
        names = [shard["name"] for shard in manifest["shards"]]
    except (KeyError, TypeError) as exc:
        raise UserError(f"{where}: not a list of {{'name': ...}} ({type(exc).__name__}: {exc})") from None
    return [inside(Path(data_dir) / "shards", str(name), where) for name in names]


def recipe_hash(data_dir: Path) -> str | None:
    """The hash of the recipe that made the dataset (None while its run is unfinished)."""
    manifest = read_manifest(Path(data_dir))
    return None if manifest is None else manifest.get("recipe_hash")


def iter_pairs(out: Path, limit: int | None = None) -> Iterator[dict]:
    """Samples of a dataset folder as dicts: key, real, toon, (mask), meta."""
    n = 0
    for tar_path in sorted((out / "shards").glob("*.tar")):
        current: dict = {}
        for tar, member, key, ext in shard_members(tar_path):
            if current and current["key"] != key:
                yield current
                n += 1
                if limit is not None and n >= limit:
                    return
                current = {}
            current["key"] = key
            data = read_member(tar_path, tar, member)
            current[ext.split(".")[0] if ext != "json" else "meta"] = (
                read_record(tar_path, member, data) if ext == "json" else _image(tar_path, member.name, data))
        if current:
            yield current
            n += 1
            if limit is not None and n >= limit:
                return


@dataclass
class Entry:
    """Where one sample lives: its shard, the byte range of each of its files, and its json record."""

    key: str
    shard: str
    files: dict[str, tuple[int, int]]  # field ("real", "toon", "mask", "json") -> (offset, size)
    meta: dict


def index_samples(out: Path) -> list[Entry]:
    """Every sample's location and record, reading only the json members (images stay on disk)."""
    entries: list[Entry] = []
    for tar_path in shard_files(out, "DIR"):
        for tar, member, key, ext in shard_members(tar_path):
            if not entries or entries[-1].key != key or entries[-1].shard != tar_path.name:
                entries.append(Entry(key, tar_path.name, {}, {}))
            field = ext.split(".")[0]
            entries[-1].files[field] = (member.offset_data, member.size)
            if field == "json":
                entries[-1].meta = read_record(tar_path, member, read_member(tar_path, tar, member))
    return entries


def read_field(out: Path, entry: Entry, field: str) -> bytes | None:
    """The raw bytes of one file of a sample (None when the sample has no such file)."""
    if field not in entry.files:
        return None
    offset, size = entry.files[field]
    with open(Path(out) / "shards" / entry.shard, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def read_image_field(out: Path, entry: Entry, field: str):
    """One image of a sample as RGB (or grey, for masks) uint8, None when absent."""
    data = read_field(out, entry, field)
    return None if data is None else _image(Path(out) / "shards" / entry.shard, f"{entry.key}.{field}.png", data)


def _image(tar_path: Path, name: str, data: bytes):
    try:
        return decode_png(data)
    except BadImage as exc:
        raise UserError(f"{tar_path}: member {name!r} is not a readable image ({exc})") from None
