"""The `samples` source's packaged people, and contact sheets that put each key under its own pair."""

from __future__ import annotations

import csv

import numpy as np

from factory.dataset.sheets import pair_sheet
from factory.sample import Sample
from factory.sources.folders import PORTRAITS, SamplesSourceConfig, packaged_portrait_names


def test_samples_source_serves_five_distinct_shipped_people_with_their_licences():
    names = packaged_portrait_names()
    assert len(names) == len(set(names)) == 5
    shipped = sorted(p.name for p in PORTRAITS.glob("*.jpg"))
    with open(PORTRAITS / "SOURCES.csv", newline="") as handle:
        recorded = {row["file"]: row["licence"] for row in csv.DictReader(handle)}
    assert sorted(recorded) == shipped and all(recorded.values())
    assert sum(p.stat().st_size for p in PORTRAITS.iterdir()) < 3_000_000
    source = SamplesSourceConfig(kind="samples").build()
    images = [source.load(Sample(key=str(i), index=i, seed=i)).real for i in range(5)]
    assert all(image is not None and image.ndim == 3 for image in images)
    assert len({image.tobytes() for image in images}) == 5
    assert source.load(Sample(key="5", index=5, seed=5)).meta["source"]["item"] == names[0]  # then round again


def test_pair_sheet_heads_columns_real_toon_and_writes_each_key_under_its_pair():
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    pairs = [{"key": f"k{n}", "real": np.full((32, 32, 3), colour, np.uint8), "toon": np.full((32, 32, 3), 230, np.uint8)}
             for n, colour in enumerate(colours)]
    sheet = pair_sheet(pairs, per_row=2, tile=64)
    text = (np.abs(sheet.astype(int) - 40) < 60).all(-1)  # dark grey writing
    first_tile_top = np.flatnonzero((sheet == colours[0]).all(-1).any(1))[0]
    assert text[:first_tile_top].any()  # the header line, above the tiles
    spans = {}
    for colour in colours:
        ys, xs = np.nonzero((sheet == colour).all(-1))  # the pair's real tile; its toon tile follows
        spans.setdefault(ys.max(), []).append((xs.min(), xs.max() + 64 + 8))
    for bottom, row in spans.items():
        written = np.flatnonzero(text[bottom + 1:bottom + 20].any(0))
        assert all(any(left <= x <= right for left, right in row) for x in written)  # no key between pairs
        assert all(any(left <= x <= right for x in written) for left, right in row)  # each pair has its key
