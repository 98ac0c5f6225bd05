"""DreamBooth-LoRA adaptation on a tiny random Stable Diffusion pipeline (CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from test_adapt_stylegan2 import cli  # noqa: E402
from test_teacher_diffusion import SIZE, models, photos, teacher  # noqa: E402,F401  (models: the tiny pipeline)

from adapt.lora import LoraAdaptConfig, LoraAdaptation, bucket  # noqa: E402
from adapt.training import Checkpoints, adapt, recipe_field  # noqa: E402
from factory.errors import UserError  # noqa: E402


def write_examples(folder: Path, count: int = 3, size: tuple[int, int] = (SIZE, SIZE)) -> Path:
    """Flat two-colour 'webtoon' faces; the first has a caption."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        image = np.full((*size, 3), (250, 220, 200), np.uint8)
        image[size[0] // 4:3 * size[0] // 4, size[1] // 4:3 * size[1] // 4] = rng.integers(0, 255, 3)
        Image.fromarray(image).save(folder / f"face{i}.png")
    (folder / "face0.txt").write_text("a girl with red hair")
    return folder


def settings(models, tmp_path, **options) -> LoraAdaptConfig:
    fields = dict(images=write_examples(tmp_path / "faces"), base=models / "sd", out=tmp_path / "lora", steps=6,
                  lr=1e-2, resolution=SIZE // 2, rank=4, validate_every=3, validation_images=2, validation_steps=2,
                  checkpoint_every=3, device="cpu")
    return LoraAdaptConfig(**{**fields, **options})


def fixed_loss(trainer: LoraAdaptation) -> float:
    """The loss over every example with the same noise and timesteps each time it is asked."""
    saved = trainer.rng.get_state()
    trainer.rng.manual_seed(123)
    with torch.no_grad():
        value = float(trainer.loss([im for im, _ in trainer.examples], [p for _, p in trainer.examples])["loss"])
    trainer.rng.set_state(saved)
    return value


@pytest.mark.slow
def test_loss_falls_and_the_lora_loads_into_the_teacher(models, tmp_path):
    config = settings(models, tmp_path, train_text_encoder=True)
    trainer = LoraAdaptation(config, recipe_field)
    assert trainer.examples[0][1] == "sks a girl with red hair" and trainer.examples[1][1] == config.instance_prompt
    before = fixed_loss(trainer)
    trainer.run(None)
    assert fixed_loss(trainer) < before * 0.95
    weights = tmp_path / "lora" / "pytorch_lora_weights.safetensors"
    from safetensors.torch import load_file

    keys = set(load_file(str(weights)))
    assert any(k.startswith("unet.") for k in keys) and any(k.startswith("text_encoder.") for k in keys)
    assert sorted(p.name for p in (tmp_path / "lora" / "validation").iterdir()) == ["step_0000003.png",
                                                                                  "step_0000006.png"]
    record = json.loads((tmp_path / "lora" / "adapt.json").read_text())
    assert record["step"] == 6 and record["kind"] == "lora"

    plain = list(teacher(models)(photos(1)))[0].toon
    styled = list(teacher(models, lora=[{"path": tmp_path / "lora"}])(photos(1)))[0].toon
    assert np.abs(styled.astype(int) - plain).mean() > 0.3  # a 6-step LoRA: a small but real change


def test_resume_restores_step_optimizer_and_draws(models, tmp_path):
    straight = settings(models, tmp_path / "a", steps=4, checkpoint_every=2, validate_every=0)
    adapt(straight)
    halves = settings(models, tmp_path / "b", steps=2, checkpoint_every=2, validate_every=0)
    adapt(halves)
    with pytest.raises(UserError, match=r"adapt\.out: .* other settings \(lr\)"):
        adapt(halves.model_copy(update={"lr": 1e-3}))
    resumed = LoraAdaptation(halves.model_copy(update={"steps": 4}), recipe_field)
    start = Checkpoints(tmp_path / "b" / "lora" / "checkpoints", 2).resolve("latest", recipe_field)
    resumed.load(start)
    assert resumed.step == 2 and all(int(s["step"]) == 2 for s in resumed.optimizer.state_dict()["state"].values())
    resumed.run(None)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "lora" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(tmp_path / "b" / "lora" / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert adapt(halves.model_copy(update={"steps": 4})) == (halves.out, False)  # done: nothing to do


def test_prior_preservation_draws_class_images_once(models, tmp_path):
    config = settings(models, tmp_path, steps=1, validate_every=0,
                      prior={"class_prompt": "a webtoon portrait", "images": 2, "sampling_steps": 2})
    trainer = LoraAdaptation(config, recipe_field)
    images, prompts = trainer.batch()
    assert len(images) == 2 and prompts[1] == "a webtoon portrait"
    assert set(trainer.train_step()) == {"loss", "instance", "prior"}
    drawn = sorted((tmp_path / "lora" / "class_images").glob("*/*.png"))
    assert len(drawn) == 2
    mtimes = [p.stat().st_mtime_ns for p in drawn]
    LoraAdaptation(config, recipe_field)
    assert [p.stat().st_mtime_ns for p in drawn] == mtimes


def test_buckets_keep_the_aspect():
    assert bucket(512, 512, 512) == (512, 512)
    assert bucket(800, 600, 512) == (576, 448)
    assert bucket(100, 400, 512) == (256, 1024)


def test_cli_mistakes_exit_2_naming_the_option(models, tmp_path):
    faces = write_examples(tmp_path / "faces")
    (tmp_path / "empty").mkdir()
    (tmp_path / "evil.pt").write_bytes(b"\x80\x04not a model")
    cases = [
        (["--images", tmp_path / "empty", "--base", models / "sd"], "--images"),
        (["--images", faces, "--base", tmp_path / "nowhere"], "--base"),
        (["--images", faces, "--base", tmp_path / "evil.pt"], "--base"),
        (["--images", faces, "--base", models / "sd", "--instance-prompt", "no token here"], "instance_prompt"),
        (["--images", faces, "--base", models / "sd", "--set", "mixed_precision=fp16", "--set", "device=cpu"],
         "--set mixed_precision"),
    ]
    for args, named in cases:
        code, output = cli("adapt", "lora", *args, "--out", tmp_path / "out", "--tracking", "none")
        assert code == 2 and named in output, output
    assert not (tmp_path / "out").exists()
