"""A folder of awkward files: each becomes a sample or a reject with its reason; the run goes on."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from toonfactory.recipe import load as load_recipe
from factory import executors
from factory.generate import RunResult, generate
from factory.images import BadImage, read_image


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture(scope="module")
def awkward(tmp_path_factory):
    folder = tmp_path_factory.mktemp("awkward")
    face = Image.fromarray(skimage.data.astronaut())
    png = io.BytesIO()
    face.save(png, format="PNG")
    (folder / "a_zero.jpg").write_bytes(b"")
    (folder / "b_truncated.png").write_bytes(png.getvalue()[: len(png.getvalue()) // 3])
    jpeg = io.BytesIO()
    face.save(jpeg, format="JPEG")
    (folder / "c_cut.jpg").write_bytes(jpeg.getvalue()[:2000])
    (folder / "d_notes.txt").write_text("not an image")
    save(Image.new("L", (12000, 12000)), folder / "e_bomb.png")
    save(face.convert("L"), folder / "f_grey.png")
    rgba = face.convert("RGBA")
    rgba.putalpha(200)
    save(rgba, folder / "g_rgba.png")
    save(face.convert("CMYK"), folder / "h_cmyk.jpg")
    sixteen = (np.asarray(face.convert("L"), dtype=np.uint16) * 257)
    save(Image.fromarray(sixteen), folder / "i_16bit.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; viewers turn it upright
    save(face.rotate(90, expand=True), folder / "j_exif.jpg", exif=exif)
    save(Image.new("RGB", (300, 300), (120, 160, 200)), folder / "k_noface.png")
    pair = np.concatenate([skimage.data.astronaut(), skimage.data.astronaut()[:, ::-1]], axis=1)
    save(Image.fromarray(pair), folder / "l_two_faces.png")
    return folder


def test_read_image_handles_modes_and_refuses_bombs(awkward):
    assert read_image(awkward / "f_grey.png").shape == (512, 512, 3)
    assert read_image(awkward / "g_rgba.png").dtype == np.uint8
    assert read_image(awkward / "h_cmyk.jpg").shape == (512, 512, 3)
    sixteen = read_image(awkward / "i_16bit.png")
    assert sixteen.dtype == np.uint8 and sixteen.max() > 200
    upright = read_image(awkward / "j_exif.jpg")
    assert upright.shape == (512, 512, 3)
    reasons = {}
    for name in ("a_zero.jpg", "b_truncated.png", "c_cut.jpg", "d_notes.txt", "e_bomb.png"):
        with pytest.raises(BadImage) as info:
            read_image(awkward / name, max_pixels=50_000_000)
        reasons[name] = info.value.reason
    assert reasons == {"a_zero.jpg": "empty_file", "b_truncated.png": "corrupt_image",
                       "c_cut.jpg": "corrupt_image", "d_notes.txt": "not_an_image",
                       "e_bomb.png": "decompression_bomb"}


def test_a_run_over_awkward_files_records_every_outcome(awkward, tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({
        "source": {"kind": "folder", "path": str(awkward), "max_pixels": 50_000_000},
        "teacher": {"kind": "cartoonize"},
        "faces": {"select": "all"},
        "gates": {"dedupe": False, "max_out_of_frame": 1.0, "min_sharpness": 0},  # edge faces: another test
        "output": {"size": 64, "count": 12, "shard_size": 12, "max_attempts": 1},
        "tracking": {"mode": "none"},
    }))
    result = generate(load_recipe(path), tmp_path / "out")
    assert not result.failed
    stats = result.made[0]
    by_item = {r["item"].rsplit("/", 1)[-1]: r["reason"] for r in stats.rejects}
    assert by_item == {"a_zero.jpg": "empty_file", "b_truncated.png": "corrupt_image",
                       "c_cut.jpg": "corrupt_image", "d_notes.txt": "not_an_image",
                       "e_bomb.png": "decompression_bomb", "k_noface.png": "no_face"}
    # grey, RGBA, CMYK, 16-bit, EXIF-rotated: one face each; the two-face image: two samples
    assert stats.accepted == 5 + 2
    assert stats.attempted == 12
