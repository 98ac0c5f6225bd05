"""Stable Diffusion teacher and prompt source on a tiny random pipeline saved as a diffusers folder."""

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from toonfactory.recipe import load as load_recipe
from factory.errors import ModelLoadError
from factory.sources.generative import PromptSourceConfig
from factory.sample import Sample
from factory.teachers.diffusion import ControlNetConfig, DiffusionConfig, condition_image, fill

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64


def write_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over single letters: enough for prompts, tiny to build."""
    from transformers import CLIPTokenizer

    letters = string.ascii_lowercase + string.digits
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *[c + "</w>" for c in letters]]
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77).save_pretrained(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from diffusers import (AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    root = tmp_path_factory.mktemp("sd")
    write_tokenizer(root / "tok")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tok")
    torch.manual_seed(0)
    blocks = dict(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=16, attention_head_dim=4,
                  norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"))
    unet = UNet2DConditionModel(sample_size=SIZE // 2, in_channels=4, out_channels=4,
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **blocks)
    vae = AutoencoderKL(block_out_channels=[16, 32], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=8, sample_size=SIZE)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=16))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)  # 0 makes diffusers warn with the whole config
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(root / "sd")
    for name in ("canny", "lineart"):
        ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 16), **blocks).save_pretrained(root / name)
    return root


def teacher(models, **options) -> object:
    fields = dict(kind="diffusion", model=models / "sd", prompt="webtoon portrait, {hair} hair", steps=2,
                  strength=0.9, guidance_scale=2.0, device="cpu", batch_size=2)
    return DiffusionConfig(**{**fields, **options}).build()


def photos(count: int, seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        sample = Sample.create(f"p{i}", i, recipe_seed=3)
        image = np.full((SIZE, SIZE, 3), 40, np.uint8)
        image[16:48, 20:44] = rng.integers(120, 255, 3)  # a bright "face" block: edges for the ControlNets
        sample.real = image
        sample.meta["source"] = {"kind": "folder", "tags": {"hair": ["black", "red"][i % 2]}}
        samples.append(sample)
    return samples


def test_img2img_with_two_controlnets_fills_the_toon_side_deterministically(models):
    controls = [{"model": models / "canny", "condition": "canny", "scale": 0.8},
                {"model": models / "lineart", "condition": "lineart", "scale": 0.5}]
    sd = teacher(models, controlnets=controls, scheduler="euler_a", negative_prompt="blurry")
    first = list(sd(photos(3)))
    assert all(s.toon.shape == (SIZE, SIZE, 3) and s.toon.dtype == np.uint8 and s.reject_reason is None
               for s in first)
    again = list(sd(photos(3)))
    assert all(np.array_equal(a.toon, b.toon) for a, b in zip(first, again))
    assert not np.array_equal(first[0].toon, first[1].toon)
    record = first[1].meta["teacher"]
    assert record["prompt"] == "webtoon portrait, red hair" and record["negative_prompt"] == "blurry"
    assert record["kind"] == "diffusion" and record["seed"] == again[1].meta["teacher"]["seed"]


def test_toon2real_inpaint_uses_the_mask_and_rejects_samples_without_one(models):
    sd = teacher(models, direction="toon2real", mode="inpaint", inpaint_region="background", batch_size=3)
    samples = photos(3)
    for sample in samples:
        sample.toon, sample.real = sample.real, None
        sample.mask = np.zeros((SIZE, SIZE), np.uint8)
        sample.mask[16:48, 20:44] = 255
    samples[2].mask = None
    out = list(sd(samples))
    assert [s.reject_reason for s in out] == [None, None, "no_mask_to_inpaint"]
    assert out[0].real.shape == (SIZE, SIZE, 3) and out[2].real is None


def test_lora_scale_and_textual_inversion_change_the_model(models, tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig as PeftLora
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(models / "sd" / "unet")
    unet.add_adapter(PeftLora(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"],
                              init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=get_peft_model_state_dict(unet))
    save_file({"<toon>": torch.randn(16)}, str(tmp_path / "toon.safetensors"))

    plain = list(teacher(models)(photos(1)))[0].toon
    lora = list(teacher(models, lora=[{"path": tmp_path / "lora", "scale": 1.0}])(photos(1)))[0].toon
    off = list(teacher(models, lora=[{"path": tmp_path / "lora", "scale": 0.0}])(photos(1)))[0].toon
    assert not np.array_equal(plain, lora)
    assert np.abs(off.astype(int) - plain).max() <= 1
    embedded = teacher(models, prompt="<toon> portrait", textual_inversion=[{"path": tmp_path / "toon.safetensors",
                                                                             "token": "<toon>"}])
    assert "<toon>" in embedded.runtime.pipe.tokenizer.get_vocab()
    assert list(embedded(photos(1)))[0].toon.shape == (SIZE, SIZE, 3)
    with pytest.raises(ModelLoadError, match=r"nowhere.*teacher\.lora\[0\]"):
        teacher(models, lora=[{"path": tmp_path / "nowhere"}])


def test_missing_or_malformed_models_are_load_errors(models, tmp_path):
    with pytest.raises(ModelLoadError, match=r"absent: cannot load model: teacher\.model"):
        teacher(models, model=tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="model_index.json"):
        teacher(models, model=tmp_path / "empty")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match=r"junk.safetensors.*teacher\.config"):
        teacher(models, model=tmp_path / "junk.safetensors")
    with pytest.raises(ModelLoadError, match=r"teacher\.controlnets\[0\]\.model"):
        teacher(models, controlnets=[{"model": tmp_path / "empty", "condition": "canny"}])


def test_conditions_and_prompt_templates():
    from skimage.data import astronaut

    face = np.ascontiguousarray(astronaut()[:256, 96:352])
    marks = condition_image(face, ControlNetConfig(model="x", condition="landmarks"))
    assert marks.shape == face.shape and (marks == 255).any() and set(np.unique(marks)) <= set(range(256))
    assert condition_image(np.zeros((64, 64, 3), np.uint8), ControlNetConfig(model="x", condition="landmarks")) is None
    edges = condition_image(face, ControlNetConfig(model="x", condition="canny"))
    assert set(np.unique(edges)) == {0, 255}
    assert fill("a {age} {gender}, {style} style", {"gender": "woman", "style": "webtoon"}) == "a woman, webtoon style"


def test_prompt_source_draws_tagged_faces_from_the_sample_seed(models):
    config = PromptSourceConfig(kind="prompt", model=models / "sd", prompt="photo of a {gender} with {hair} hair",
                                tags={"gender": ["man", "woman"], "hair": ["black", "red", "brown"]}, size=SIZE,
                                steps=2, device="cpu", domain="toon")
    source = config.build()
    a, b = source.load(Sample.create("k1", 1, 0)), source.load(Sample.create("k1", 1, 0))
    assert a.toon.shape == (SIZE, SIZE, 3) and a.real is None and np.array_equal(a.toon, b.toon)
    record = a.meta["source"]
    assert record["prompt"] == f"photo of a {record['tags']['gender']} with {record['tags']['hair']} hair"
    picks = {tuple(source.pick_tags(Sample.create(f"k{i}", i, 0)).values()) for i in range(40)}
    assert len(picks) > 3


@pytest.mark.parametrize("name", ["sd-img2img-webtoon", "sd-realify", "sd-prompt-cartoongan"])
def test_diffusion_recipes_validate(name):
    resolved = load_recipe(ROOT / "recipes" / f"{name}.yaml")
    assert resolved.recipe.teacher.kind in ("diffusion", "cartoongan")
