"""CartoonGAN on its real pretrained weights: the golden reference, safetensors, errors, recipe."""

from pathlib import Path

import numpy as np
import pytest

from toonfactory.recipe import load as load_recipe
from factory.errors import ModelLoadError, RecipeError
from factory.images import read_image
from factory.sample import Sample
from factory.teachers.cartoongan import CartoonGANConfig, load_generator

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "assets" / "models" / "cartoongan_hayao"
needs_weights = pytest.mark.skipif(not WEIGHTS.is_dir(), reason=f"CartoonGAN weights not found at {WEIGHTS}")


@pytest.fixture(scope="module")
def teacher():
    return CartoonGANConfig(kind="cartoongan", weights=WEIGHTS, device="cpu", batch_size=2).build()


@needs_weights
def test_reproduces_the_reference_output(teacher):
    source = read_image(WEIGHTS / "reference" / "input_256.png")
    expected = read_image(WEIGHTS / "reference" / "output_256.png")
    sample = Sample.create("ref", 0, 0)
    sample.real = source
    (out,) = list(teacher([sample]))
    diff = np.abs(out.toon.astype(int) - expected.astype(int))
    assert out.toon.shape == expected.shape and out.toon.dtype == np.uint8
    assert diff.max() <= 3 and diff.mean() < 1.0
    assert out.meta["teacher"]["kind"] == "cartoongan"


@needs_weights
def test_safetensors_file_gives_the_same_images(teacher, tmp_path):
    import torch
    from safetensors.torch import save_file

    file = tmp_path / "hayao.safetensors"
    save_file({k: v.contiguous() for k, v in load_generator(WEIGHTS).state_dict().items()}, str(file))
    other = CartoonGANConfig(kind="cartoongan", weights=file, device="cpu").build()
    image = read_image(WEIGHTS / "reference" / "input_256.png")[::4, ::4][:62, :58]  # odd size: padded inside
    a, b = teacher.stylize([image])[0], other.stylize([image])[0]
    assert a.shape == image.shape and np.array_equal(a, b)
    assert torch.equal(load_generator(file).conv01_1.weight, load_generator(WEIGHTS).conv01_1.weight)


def test_missing_or_malformed_weights_name_the_path(tmp_path):
    with pytest.raises(ModelLoadError, match="nowhere"):
        load_generator(tmp_path / "nowhere")
    (tmp_path / "conv01_1.weight.npy").write_bytes(b"not numpy")
    with pytest.raises(ModelLoadError, match="conv01_1.weight.npy"):
        load_generator(tmp_path)
    np.save(tmp_path / "conv01_1.weight.npy", np.zeros((64, 3, 3, 3), np.float32))
    with pytest.raises(ModelLoadError, match="missing: .*wrong shape: conv01_1.weight"):
        load_generator(tmp_path)


def test_recipe_validates_and_refuses_toon2real():
    resolved = load_recipe(ROOT / "recipes" / "cartoongan.yaml")
    assert resolved.recipe.teacher.kind == "cartoongan"
    with pytest.raises(RecipeError, match=r"teacher\.direction"):
        load_recipe(ROOT / "recipes" / "cartoongan.yaml", ["teacher.direction=toon2real"])
