"""The dataset card: ``DIR/README.md`` with Hugging Face metadata, so ``datasets`` and the Hub read the folder as is.

The YAML names the shards as the data files (the folder also holds stats and records in json) and
declares the features (``real.png``, ``toon.png``, ``mask.png`` images, the ``json`` record as a
struct, inferred with ``datasets``' own rules from records spread over every shard); the body gives
counts, the recipe hash, the teacher, rejects by reason, sources and licence fields.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from factory.dataset.layout import check_manifest
from factory.dataset.reader import manifest_shards, read_member, read_record, shard_members
from factory.errors import UserError
from factory.files import write_atomic

CARD = "README.md"
IMAGE_FIELDS = ("real.png", "toon.png", "mask.png")
STAMP = "\n<!-- toonfactory card "  # the card's last line: the hash of what is above it
RECORDS_FOR_FEATURES = 2000  # json records read to infer the struct, spread over the shards


def size_category(n: int) -> str:
    """The Hub's size bucket for ``n`` examples."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M")]
    return next((name for bound, name in bounds if n < bound), "10M<n<100M")


def _json_records(shard_paths: list[Path]) -> list[dict]:
    per_shard = max(5, RECORDS_FOR_FEATURES // max(len(shard_paths), 1))
    records = []
    for tar_path in shard_paths:
        for tar, member, _, ext in shard_members(tar_path):
            if ext == "json":
                records.append(read_record(tar_path, member, read_member(tar_path, tar, member)))
                if len(records) % per_shard == 0:
                    break
    return records


def features(out: Path, manifest: dict):
    """The ``datasets.Features`` of the shards as the webdataset loader yields them."""
    import datasets
    import pyarrow as pa
    from datasets.features.features import cast_to_python_objects

    records = _json_records(manifest_shards(out, manifest))
    tables = [pa.Table.from_pylist(cast_to_python_objects([{"json": r}], only_1d_for_numpy=True)) for r in records]
    if tables:
        try:
            schema = pa.concat_tables(tables, promote_options="default").schema
        except pa.ArrowException as exc:  # records whose fields change type between samples (a damaged shard)
            raise UserError(f"{out / 'shards'}: the samples' json records disagree on a field's type ({exc})") from None
        json_feature = datasets.Features.from_arrow_schema(schema)["json"]
    else:  # a run whose every candidate was rejected: no record to infer the json column from
        json_feature = {"key": datasets.Value("string")}
    columns = {name: datasets.Image() for name in IMAGE_FIELDS if name in manifest["fields"]}
    return datasets.Features({**columns, "json": json_feature, "__key__": datasets.Value("string"),
                              "__url__": datasets.Value("string")})


def card_metadata(out: Path, manifest: dict):
    """The card's YAML as ``huggingface_hub.DatasetCardData``: licence, tags, data files and dataset_info."""
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    accepted = manifest["counts"]["accepted"]
    data = DatasetCardData(
        license="unknown", pretty_name=manifest["name"], task_categories=["image-to-image"],
        size_categories=[size_category(accepted)], tags=["toonfactory", "webtoon", "paired-images", "synthetic"],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.tar"}]}],
    )
    splits = datasets.SplitDict()
    splits.add(datasets.SplitInfo(name="train", num_examples=accepted))
    info = datasets.DatasetInfo(features=features(out, manifest), splits=splits)
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def card_body(manifest: dict) -> str:
    """The card's markdown: what the folder holds and how it was made."""
    recipe = manifest["recipe"]
    teacher = recipe.get("teacher") or {}
    counts = manifest["counts"]
    rejects = sorted(counts["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))
    parent = manifest.get("parent")
    lineage = "" if parent is None else (
        f"\nA filtered version of `{parent['path']}` (recipe hash `{parent['recipe_hash']}`): "
        f"{len(parent['removed'])} pair(s) marked bad in review were removed.\n")
    source = json.dumps(recipe.get("source"), sort_keys=True)
    return f"""
# {manifest['name']}

Aligned webtoon <-> real portrait pairs made by toonfactory (format `{manifest['format']}`).
{lineage}
{_table(("planned", "attempted", "accepted", "rejected"),
         [(counts["planned"], counts["attempted"], counts["accepted"], sum(counts["rejected"].values()))])}

- recipe hash: `{manifest['recipe_hash']}` (the resolved recipe is in `recipe.json` and `manifest.json`)
- teacher: `{teacher.get('kind')}`, direction `{teacher.get('direction', 'real2toon')}`
- fields: {', '.join(f'`{f}`' for f in manifest['fields'])}; {len(manifest['shards'])} shard(s) in `shards/`

## Rejected inputs

{_table(("reason", "count"), rejects or [("none", 0)])}

One row per rejected input, with its reason, is in `stats/*.json` (`rejects`).

## Sources and licence

- source: `{source}`
- licence: `unknown` until filled in. The pairs inherit the terms of the source images and of the
  teacher's weights named above; write them here and set `license` in the header before sharing.

## Loading

```python
import datasets
pairs = datasets.load_dataset("path/to/this/folder", split="train")
```
"""


def write_card(out: Path, manifest: dict, replace: bool = False) -> Path:
    """Write ``out/README.md`` (atomically); identical for identical data. Its last line stamps the hash of
    the card above it, so a card someone edited (the licence it asks for) is refused, not replaced, unless
    ``replace``."""
    from huggingface_hub import DatasetCard

    check_manifest(out, manifest)
    text = str(DatasetCard(f"---\n{card_metadata(out, manifest).to_yaml()}\n---\n{card_body(manifest)}"))
    path = Path(out) / CARD
    if not replace and edited(path, text):
        raise UserError(f"{path}: edited since toonfactory wrote it (or written by hand); kept as it is: move it "
                        "away, or `toonfactory dataset card --overwrite` to replace it")
    write_atomic(path, (text + _stamp(text)).encode())
    return path


def _stamp(text: str) -> str:
    return f"{STAMP}{hashlib.sha256(text.encode()).hexdigest()[:16]} -->\n"


def edited(path: Path, text: str) -> bool:
    """Whether the card at ``path`` is not as toonfactory wrote it: its stamp does not match what it holds.
    A card without a stamp (written before stamps) counts as unedited when it is ``text`` itself."""
    if os.path.islink(path) or not path.is_file():
        return False  # nothing there, or a link, which the write refuses by name
    held = path.read_bytes().decode(errors="replace")
    if held == text:
        return False
    if STAMP not in held:
        return True
    body = held[:held.rfind(STAMP)]
    return held != body + _stamp(body)
