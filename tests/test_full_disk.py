"""A full disk under `generate` (at its contact sheet), `curate` and `cast gallery` (issue 28): one line naming
the file, exit 2, nothing half-written kept, and the same command re-run finishes the job. The disk fills
the way the train/export/filter tests fill it: the command runs in a process whose files may not grow past
a size (``ulimit -f``), so every write past it fails in Python and native writers alike.

Before these tests: a re-run of `generate` said "nothing to make" and never made the contact sheet;
`curate`'s journal append and every command's lock file failed as "error: File too large" naming no file
(and the journal kept half a line); a `cast gallery` stopped between its embeddings and its json left a
gallery whose json counted other rows than its embeddings held, refused by every later command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_cast import COLOURS, face_image, save
from tests.test_nothing_lost_leftovers import QUICKSTART, limited

SMALL = [a for s in ("output.count=8", "output.shard_size=4", "output.size=64", "tracking.mode=none") for a in ("--set", s)]
# `cast gallery` with the fake detector and embedder of the casting tests (no dlib: the test stays fast)
FAKES = ("import casting.gallery, factory.faces\n"
         "from tests.test_cast import ColourEmbedder, SquareDetector\n"
         "factory.faces.DetectorChain = lambda *a, **k: SquareDetector()\n"
         "casting.gallery.embedder_for = lambda *a, **k: ColourEmbedder()")


def one_line(output: str, path: Path) -> bool:
    return "Traceback" not in output and f"error: {path}: File too large;" in output


@pytest.mark.slow
def test_generate_on_a_disk_full_at_its_contact_sheet_is_one_line_and_a_rerun_makes_the_sheet(tmp_path):
    out = tmp_path / "data"
    # the shards (about 130 KB each) fit, the contact sheet (about 400 KB) does not
    code, output = limited(250_000, "generate", QUICKSTART, "--out", out, *SMALL)
    assert code == 2 and one_line(output, out / "contact_sheet.png"), output[-2000:]
    assert (out / "manifest.json").is_file() and not (out / "contact_sheet.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".contact_sheet.png.")]
    code, output = limited(None, "generate", QUICKSTART, "--out", out, *SMALL)
    assert code == 0 and "nothing to make" in output, output[-2000:]
    assert (out / "contact_sheet.png").stat().st_size > 250_000


@pytest.mark.slow
def test_curate_on_a_full_disk_is_one_line_naming_its_journal_which_keeps_whole_lines(assets, tmp_path):
    page, out = assets / "comics" / "peppercarrot" / "sample_page_0.jpg", tmp_path / "curated"
    args = ("curate", "comics", page, "--out", out, "--size", 48, "--tracking", "none")
    # the 48 px crops (a few KB) fit; the page's journal line (its faces' features, over 19 KB) does not
    code, output = limited(16_000, *args)
    assert code == 2 and one_line(output, out / "journal.jsonl"), output[-2000:]
    assert (out / "journal.jsonl").read_bytes() == b""  # the half line that went in was taken back
    assert list((out / "faces").glob("*.png"))  # the crops written whole are kept
    code, output = limited(None, *args)
    assert code == 0 and "1 new files" in output, output[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["faces"] and not (out / "journal.jsonl").exists()


def actors(folder: Path, names=("ann", "bob")) -> Path:
    for name in names:
        save(face_image(COLOURS[name]), folder / name / "1.png")
    return folder


@pytest.mark.slow  # each case is a fresh Python process (imports alone take seconds under load)
def test_cast_gallery_on_a_full_disk_at_its_lock_or_a_thumbnail_is_one_line_naming_it(tmp_path):
    people = actors(tmp_path / "actors")
    out = tmp_path / "gallery"
    code, output = limited(20, "cast", "gallery", people, "--out", out, prelude=FAKES)  # the lock's record (~80 B)
    assert code == 2 and one_line(output, out / ".toonfactory.lock"), output[-2000:]
    assert not out.exists()  # the folder it made for the lock is taken back
    code, output = limited(1_000, "cast", "gallery", people, "--out", out, prelude=FAKES)  # a thumbnail (~2 KB)
    assert code == 2 and "Traceback" not in output and f"error: {out / 'faces'}/" in output, output[-2000:]
    assert "File too large;" in output and not list((out / "faces").iterdir())
    assert not (out / "gallery.json").exists()


@pytest.mark.slow
def test_a_gallery_cut_short_between_its_embeddings_and_its_json_still_reads_and_a_rerun_finishes(tmp_path):
    from casting.gallery import Gallery

    people = actors(tmp_path / "actors")
    out = tmp_path / "gallery"
    code, output = limited(None, "cast", "gallery", people, "--out", out, prelude=FAKES)
    assert code == 0, output[-2000:]
    before = (out / "gallery.json").read_bytes()
    shutil.rmtree(people / "bob")
    # bob leaves: the new embeddings (one row, under 100 B) fit, the new json (about 400 B) does not
    code, output = limited(300, "cast", "gallery", people, "--out", out, prelude=FAKES)
    assert code == 2 and one_line(output, out / "gallery.json"), output[-2000:]
    assert (out / "gallery.json").read_bytes() == before
    kept = Gallery.load(out)  # the json still names the rows it was written with
    assert [e["actor"] for e in kept.entries] == ["ann", "bob"] and kept.vectors.shape[0] == 2
    code, output = limited(None, "cast", "gallery", people, "--out", out, prelude=FAKES)
    assert code == 0 and "1 removed" in output, output[-2000:]
    again = Gallery.load(out)
    assert [e["actor"] for e in again.entries] == ["ann"] and again.vectors.shape[0] == 1
    assert [p.name for p in out.glob("embeddings*.safetensors")] == [json.loads((out / "gallery.json").read_text())["embeddings"]]
