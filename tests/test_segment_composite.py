"""Background inpainting (OpenCV, a LaMa-contract TorchScript), person-only stylization, cutface backgrounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from factory.masks import composite
from factory.stages.backgrounds import BackgroundsConfig, BackgroundSwap
from factory.stages.person_only import PersonOnlyConfig, PersonOnlyTeacher, person_only
from factory.errors import ModelLoadError, UserError
from factory.images import encode_png
from factory.stages.inpaint import LamaInpaintConfig, LamaInpainter, OpenCVInpaintConfig, OpenCVInpainter, hole_mask
from factory.sample import Sample
from factory.teachers.cartoonize import CartoonizeConfig

BACKGROUND = np.array([40, 120, 200], np.uint8)
PERSON = np.array([230, 180, 150], np.uint8)


def scene(h: int = 96, w: int = 80):
    """A smooth background (gradient) with a square 'person'; the exact person mask (uint8)."""
    image = np.empty((h, w, 3), np.uint8)
    image[:] = BACKGROUND
    image[..., 0] = np.linspace(20, 60, w, dtype=np.uint8)[None, :]
    mask = np.zeros((h, w), np.uint8)
    mask[30:70, 25:55] = 255
    image[mask > 0] = PERSON
    return image, mask


def square_backend(image):
    mask = np.zeros(image.shape[:2], np.float32)
    mask[30:70, 25:55] = 1.0
    return mask


def invert(image):
    return 255 - image


@pytest.mark.parametrize("method", ["telea", "ns"])
@pytest.mark.parametrize("work_size", [32, 256])
def test_opencv_inpainting_removes_the_person_and_keeps_the_rest(method, work_size):
    image, mask = scene()
    config = OpenCVInpaintConfig(method=method, work_size=work_size, grow=0.03)
    out = OpenCVInpainter(config)(image, mask)
    hole = hole_mask(mask, config.threshold, config.grow).astype(bool)
    assert np.array_equal(out[~hole], image[~hole]), "pixels outside the hole are untouched"
    filled = out[40:60, 30:50].astype(int)
    assert np.abs(filled - BACKGROUND.astype(int))[..., 1:].max() < 12, "the hole takes the background colour"
    assert np.abs(filled - PERSON.astype(int)).mean() > 60


def test_hole_mask_grows_with_grow():
    _, mask = scene()
    assert hole_mask(mask, 0.1, 0.0).sum() == (mask > 0).sum()
    assert hole_mask(mask, 0.1, 0.05).sum() > (mask > 0).sum()
    assert hole_mask(np.zeros_like(mask), 0.1, 0.05).sum() == 0


class MeanFill(torch.nn.Module):
    """A LaMa-contract model: fills the hole with the mean known colour; demands ×8 sides and [0, 1] inputs."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0
        assert float(image.max()) <= 1.0 and float(mask.max()) <= 1.0
        known = 1.0 - mask
        mean = (image * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True)
        return image * known + mean * mask


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_lama_torchscript_checkpoint_fills_the_hole(tmp_path):
    path = tmp_path / "lama.pt"
    torch.jit.script(MeanFill()).save(str(path))
    image, mask = scene(h=90, w=75)
    inpainter = LamaInpaintConfig(kind="lama", checkpoint=path, device="cpu", grow=0.02).build()
    out = inpainter(image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out[50, 40].astype(int) - BACKGROUND.astype(int))[1:].max() < 25
    hole = hole_mask(mask, 0.1, 0.02).astype(bool)
    assert np.array_equal(out[~hole], image[~hole])


def test_lama_bad_checkpoint_is_a_model_load_error(tmp_path):
    plain = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(ModelLoadError, match="state.pt.*segment.inpaint.checkpoint"):
        LamaInpainter(LamaInpaintConfig(kind="lama", checkpoint=plain, device="cpu"))
    with pytest.raises(ModelLoadError, match="file not found"):
        LamaInpainter(LamaInpaintConfig(kind="lama", checkpoint=tmp_path / "none.pt", device="cpu"))


def test_composite_blends_with_the_soft_mask():
    person = np.full((4, 4, 3), 200, np.uint8)
    background = np.full((4, 4, 3), 100, np.uint8)
    mask = np.array([[0, 64, 128, 255]] * 4, np.uint8)
    out = composite(person, background, mask)
    assert out[0, :, 0].tolist() == [100, 125, 150, 200]
    with pytest.raises(ValueError):
        composite(person, background[:2], mask)


def test_person_only_keeps_the_background():
    image, _ = scene()
    out = person_only(image, invert, square_backend, feather=0.0)
    assert np.array_equal(out[:20], image[:20]), "background kept pixel for pixel"
    assert np.array_equal(out[40:60, 30:50], invert(image)[40:60, 30:50]), "the person is stylized"


def test_person_only_stylized_background_has_no_ghost_of_the_person():
    image, _ = scene()
    out = person_only(image, invert, square_backend, background="stylize", feather=0.0)
    assert np.array_equal(out[40:60, 30:50], invert(image)[40:60, 30:50])
    ring = out[26:29, 30:50].astype(int)  # just outside the person: stylized background, not stylized person
    assert np.abs(ring - invert(BACKGROUND[None, None]).astype(int))[..., 1:].max() < 15
    assert np.abs(out[:10].astype(int) - invert(image)[:10].astype(int)).max() <= 1


def pair_samples(n: int = 2):
    samples = []
    for i in range(n):
        sample = Sample.create(f"s{i}", i, recipe_seed=7)
        sample.real, sample.mask = scene()
        sample.meta["segment"] = {"mask": "test"}
        samples.append(sample)
    return samples


@pytest.mark.parametrize("background", ["keep", "stylize"])
def test_person_only_teacher_wraps_any_teacher(background):
    teacher = CartoonizeConfig(kind="cartoonize", batch_size=2).build()
    stage = PersonOnlyTeacher(teacher, PersonOnlyConfig(background=background), inpainter=OpenCVInpainter())
    out = list(stage(pair_samples(3)))
    assert len(out) == 3
    for sample in out:
        assert sample.toon.shape == sample.real.shape
        assert sample.meta["segment"] == {"mask": "test", "person_only": {"background": background}}
        outside = sample.mask == 0
        if background == "keep":
            assert np.array_equal(sample.toon[outside], sample.real[outside])
        else:
            assert not np.array_equal(sample.toon[outside], sample.real[outside])
        assert sample.meta["teacher"]["kind"] == "cartoonize"


def test_person_only_teacher_needs_masks():
    sample = pair_samples(1)[0]
    sample.mask = None
    stage = PersonOnlyTeacher(CartoonizeConfig(kind="cartoonize").build(), PersonOnlyConfig())
    with pytest.raises(RuntimeError, match="mask"):
        list(stage([sample]))


def with_toon(samples):
    for sample in samples:
        sample.toon = invert(sample.real)
    return samples


def test_background_swap_is_identical_on_both_sides_and_seeded():
    stage = BackgroundSwap(BackgroundsConfig(probability=1.0, choke=0.0))
    first = [stage.process(s) for s in with_toon(pair_samples(2))]
    again = [stage.process(s) for s in with_toon(pair_samples(2))]
    for a, b in zip(first, again):
        assert np.array_equal(a.real, b.real) and np.array_equal(a.toon, b.toon), "seeded by the sample key"
        outside = a.mask == 0
        assert np.array_equal(a.real[outside], a.toon[outside]), "one background on both sides"
        inside = a.mask == 255
        assert np.array_equal(a.real[inside], scene()[0][inside])
        assert a.meta["segment"]["background"] == {"source": "generated"}
    assert not np.array_equal(first[0].real, first[1].real), "samples get different backgrounds"


def test_background_swap_from_a_folder(tmp_path):
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0)]):
        (tmp_path / f"bg{i}.png").write_bytes(encode_png(np.full((50, 70, 3), colour, np.uint8)))
    (tmp_path / "notes.txt").write_text("not an image")
    stage = BackgroundSwap(BackgroundsConfig(folder=tmp_path, probability=1.0, choke=0.02))
    sample = stage.process(with_toon(pair_samples(1))[0])
    record = sample.meta["segment"]["background"]
    assert record["source"] == "folder" and record["file"] in {"bg0.png", "bg1.png"}
    colour = np.array((255, 0, 0) if record["file"] == "bg0.png" else (0, 255, 0))
    assert np.array_equal(sample.real[0, 0], colour) and np.array_equal(sample.toon[0, 0], colour)


def test_background_swap_probability_and_errors(tmp_path):
    untouched = BackgroundSwap(BackgroundsConfig(probability=0.0)).process(with_toon(pair_samples(1))[0])
    assert np.array_equal(untouched.real, scene()[0]) and "background" not in untouched.meta["segment"]
    with pytest.raises(UserError, match="segment.backgrounds.folder"):
        BackgroundSwap(BackgroundsConfig(folder=tmp_path / "missing", probability=1.0)).process(pair_samples(1)[0])


def test_segment_then_person_only_then_cutface_on_a_real_portrait():
    """The chain the pipeline runs: mediapipe mask → person-only teacher (background kept) → cutface."""
    import cv2
    from skimage import data

    from factory.stages.segment import SegmentConfig

    config = SegmentConfig.model_validate({"person_only": {"background": "keep"},
                                           "backgrounds": {"probability": 1.0, "choke": 0.0}})
    teacher = config.wrap_teacher(CartoonizeConfig(kind="cartoonize").build())
    stages = [config.build(), teacher, config.background_stage()]
    sample = Sample.create("astronaut", 0, recipe_seed=3)
    sample.real = cv2.resize(data.astronaut(), (128, 128), interpolation=cv2.INTER_AREA)
    original = sample.real.copy()
    stream = iter([sample])
    for stage in stages:
        stream = stage(stream)
    (out,) = list(stream)
    assert out.reject_reason is None and out.mask.shape == (128, 128)
    assert 0.3 < out.meta["segment"]["coverage"] < 0.8
    assert out.meta["segment"]["person_only"] == {"background": "keep"}
    assert out.meta["segment"]["background"] == {"source": "generated"}
    outside, inside = out.mask == 0, out.mask == 255
    assert np.array_equal(out.real[outside], out.toon[outside]), "one new background on both sides"
    assert not np.array_equal(out.real[outside], original[outside])
    assert np.array_equal(out.real[inside], original[inside]), "the person is untouched on the real side"
    assert not np.array_equal(out.toon[inside], original[inside]), "and stylized on the toon side"


def test_segment_config_without_person_only_leaves_the_teacher_alone():
    from factory.stages.segment import SegmentConfig

    teacher = CartoonizeConfig(kind="cartoonize").build()
    assert SegmentConfig().wrap_teacher(teacher) is teacher
    assert SegmentConfig().background_stage() is None


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    """A Stable Diffusion folder at toy size with random weights (letter-level CLIP tokenizer)."""
    import json
    import string

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd_inpaint")
    symbols = string.ascii_lowercase + ","
    vocab = ["<|startoftext|>", "<|endoftext|>", *symbols, *[c + "</w>" for c in symbols]]
    (root / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=77)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(block_out_channels=[16, 32], latent_channels=4, norm_num_groups=8, sample_size=32,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                              steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(root / "sd")
    return root / "sd"


def test_diffusion_inpainting_repaints_only_the_hole(tiny_sd):
    from factory.stages.inpaint import DiffusionInpaintConfig

    config = DiffusionInpaintConfig(kind="diffusion", model=tiny_sd, steps=2, device="cpu", grow=0.0)
    inpainter = config.build()
    image, mask = scene(h=40, w=48)
    out = inpainter(image, mask)
    hole = hole_mask(mask, config.threshold, config.grow).astype(bool)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[~hole], image[~hole]), "known pixels are kept exactly"
    assert not np.array_equal(out[hole], image[hole]), "the hole is repainted"
    assert np.array_equal(out, inpainter(image, mask)), "a fixed seed gives the same fill"


def test_diffusion_inpainting_missing_model_is_a_model_load_error(tmp_path):
    from factory.stages.inpaint import DiffusionInpaintConfig

    with pytest.raises(ModelLoadError, match="missing"):
        DiffusionInpaintConfig(kind="diffusion", model=tmp_path / "missing", device="cpu").build()
