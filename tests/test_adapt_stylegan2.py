"""StyleGAN2 few-shot fine-tuning on a tiny random generator (CPU), and the Toonify teacher reading it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from test_teacher_stylegan2 import sample, save_rosinality, tiny  # noqa: E402

from adapt.stylegan2 import StyleGAN2AdaptConfig, StyleGAN2Adaptation, diff_augment  # noqa: E402
from adapt.training import Checkpoints, adapt, recipe_field  # noqa: E402
from factory.errors import UserError  # noqa: E402
from factory.models import stylegan2  # noqa: E402
from factory.teachers.toonify import ToonifyConfig  # noqa: E402
from toonfactory.cli import app  # noqa: E402

RED = (230, 40, 40)


def cli(*args) -> tuple[int, str]:
    """Exit status and output of a command, a UserError handled as `toonfactory` does (exit 2)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(result.exception, UserError):
        return result.exception.exit_code, f"{result.output}{result.exception}"
    return result.exit_code, result.output


def write_faces(folder: Path, count: int = 4, size: int = 48) -> Path:
    """Flat red 'toon faces' (square, larger than the generator: they are resized)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.full((size, size, 3), RED, np.uint8)
        image[size // 3:size // 2, size // 4 + i:size // 2 + i] = 20
        Image.fromarray(image).save(folder / f"toon{i}.png")
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny base checkpoint as stylegan2-pytorch writes it, with a discriminator (`d`)."""
    path = tmp_path_factory.mktemp("base") / "base.pt"
    generator = tiny(0)
    save_rosinality(generator, path)
    checkpoint = torch.load(path, weights_only=False)
    torch.manual_seed(1)
    checkpoint["d"] = stylegan2.Discriminator(32, generator.channels).state_dict()
    torch.save(checkpoint, path)
    return path


def settings(base: Path, tmp_path: Path, **options) -> StyleGAN2AdaptConfig:
    fields = dict(images=write_faces(tmp_path / "faces"), base=base, out=tmp_path / "toon.safetensors", steps=8,
                  batch_size=4, lr=0.005, ema_kimg=0.01, d_reg_every=4, validate_every=4, validation_images=4,
                  checkpoint_every=4, device="cpu")
    return StyleGAN2AdaptConfig(**{**fields, **options})


def redness(generator: stylegan2.Generator) -> float:
    """How far the generator's mean colour is from the examples' red (lower: closer)."""
    with torch.no_grad():
        images = generator.synthesis(generator.mapping(torch.randn(16, 16, generator=torch.Generator().manual_seed(5))))
    mean = images.clamp(-1, 1).mean((0, 2, 3))
    return float((mean - (torch.tensor(RED) / 127.5 - 1)).abs().mean())


def test_fine_tune_moves_toward_the_faces_and_feeds_toonify(base, tmp_path):
    config = settings(base, tmp_path)
    trainer = StyleGAN2Adaptation(config, recipe_field)
    before = redness(trainer.g_ema)
    frozen = {k: v.clone() for k, v in trainer.discriminator.convs[:2].state_dict().items()}
    mapping = {k: v.clone() for k, v in trainer.generator.style.state_dict().items()}
    losses = []
    trainer.on_step = lambda step, total, record: losses.append(record["d"])
    trainer.run(None)
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # the discriminator learns to tell them apart
    assert redness(trainer.g_ema) < before * 0.8
    assert all(torch.equal(frozen[k], v) for k, v in trainer.discriminator.convs[:2].state_dict().items())
    assert all(torch.equal(mapping[k], v) for k, v in trainer.generator.style.state_dict().items())
    assert len(list((tmp_path / "toon-adapt" / "validation").glob("*.png"))) == 2

    toon_state = stylegan2.read_state(config.out)
    assert set(toon_state) == set(stylegan2.read_state(base))
    assert stylegan2.read_discriminator_state(config.out).keys() == trainer.discriminator.state_dict().keys()
    teacher = ToonifyConfig(kind="toonify", base=base, toon=config.out, swap_resolution=8, device="cpu").build()
    source = {"kind": "stylegan2", "checkpoint": str(base), "latent_seed": 3, "noise_seed": 4, "noise": "sample",
              "truncation": 0.7, "mean_latent_samples": 64}
    item = sample(0)
    item.meta["source"] = source
    toon = list(teacher([item]))[0].toon
    item = sample(0)
    item.meta["source"] = source
    plain = list(ToonifyConfig(kind="toonify", base=base, toon=base, device="cpu").build()([item]))[0].toon
    assert np.abs(toon.astype(int) - plain).mean() > 2


def test_weights_only_pt_output_and_exact_resume(base, tmp_path):
    straight = settings(base, tmp_path / "a", steps=4, checkpoint_every=2, validate_every=0,
                        out=tmp_path / "a" / "toon.pt")
    adapt(straight)
    assert set(torch.load(straight.out, weights_only=True)) == {"g_ema", "d"}
    halves = settings(base, tmp_path / "b", steps=2, checkpoint_every=2, validate_every=0,
                      out=tmp_path / "b" / "toon.pt")
    adapt(halves)
    longer = halves.model_copy(update={"steps": 4})
    with pytest.raises(UserError, match="--resume latest"):
        adapt(longer, resume=None)
    resumed = StyleGAN2Adaptation(longer, recipe_field)
    resumed.load(Checkpoints(tmp_path / "b" / "toon-adapt" / "checkpoints", 2).resolve("latest", recipe_field))
    assert resumed.step == 2 and resumed.opt_d.state_dict()["state"]
    resumed.run(None)
    a, b = stylegan2.read_state(straight.out), stylegan2.read_state(halves.out)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_diff_augment_is_differentiable_and_seeded():
    images = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = diff_augment(images, ["color", "translation", "cutout"], torch.Generator().manual_seed(0))
    again = diff_augment(images, ["color", "translation", "cutout"], torch.Generator().manual_seed(0))
    assert torch.equal(out, again) and not torch.equal(out, images)
    out.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0


def test_cli_mistakes_exit_2_naming_the_option(base, tmp_path):
    faces = write_faces(tmp_path / "faces")
    odd = write_faces(tmp_path / "odd")
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(odd / "wide.png")
    (tmp_path / "empty").mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    torch.save({"g_ema": {}, "x": Evil()}, tmp_path / "evil.pt")
    cases = [
        (["--images", tmp_path / "empty", "--base", base], "--images"),
        (["--images", odd, "--base", base], "wide.png"),
        (["--images", faces, "--base", tmp_path / "nowhere.pt"], "--base"),
        (["--images", faces, "--base", tmp_path / "evil.pt"], "evil.pt: cannot load model"),
        (["--images", faces, "--base", base, "--set", "discriminator=" + str(tmp_path / "gone.pt")],
         "--set discriminator"),
    ]
    for args, named in cases:
        code, output = cli("adapt", "stylegan2", *args, "--out", tmp_path / "out" / "t.pt", "--tracking", "none")
        assert code == 2 and named in output and "code ran" not in output, output
    code, output = cli("adapt", "stylegan2", "--images", faces, "--base", base, "--out", tmp_path / "out" / "t.pkl")
    assert code == 2 and "out: must end in" in output
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_run_adapts_first_then_generates_with_the_adapted_teacher(base, tmp_path):
    import yaml

    write_faces(tmp_path / "faces")
    recipe = {
        "name": "adapted-toonify", "source": {"kind": "stylegan2", "checkpoint": str(base), "device": "cpu",
                                              "mean_latent_samples": 64},
        "teacher": {"kind": "toonify", "base": str(base), "toon": "style/toon.safetensors", "swap_resolution": 8,
                    "device": "cpu"},
        "adapt": {"kind": "stylegan2", "images": "faces", "base": str(base), "out": "style/toon.safetensors",
                  "steps": 2, "batch_size": 2, "validate_every": 0, "device": "cpu"},
        "output": {"size": 32, "count": 2, "shard_size": 2, "max_attempts": 1.0},
        "tracking": {"mode": "none"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert cli("validate", path)[0] == 0  # the toon file is made by the run
    code, output = cli("run", path, "--out", tmp_path / "data")
    assert code == 0 and "adapted" in output, output
    assert (tmp_path / "style" / "toon.safetensors").is_file() and (tmp_path / "data" / "manifest.json").is_file()
    code, output = cli("run", path, "--out", tmp_path / "data")
    assert code == 0 and "already adapted" in output

    recipe["adapt"]["lr"] = 0.001  # another adaptation into the same output is refused
    path.write_text(yaml.safe_dump(recipe))
    code, output = cli("run", path, "--out", tmp_path / "data")
    assert code == 2 and "adapt.out" in output and "(lr)" in output
    recipe["teacher"]["toon"] = str(base)
    path.write_text(yaml.safe_dump(recipe))
    code, output = cli("validate", path)
    assert code == 2 and "teacher.toon" in output


def test_a_second_run_into_the_same_output_is_refused(tmp_path):
    import fcntl

    from adapt.training import exclusive

    with exclusive(tmp_path / "work", recipe_field):
        with open(tmp_path / "work" / ".lock") as other:  # what another process would try
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(UserError, match=r"adapt\.out: another process"):
            with exclusive(tmp_path / "work", recipe_field):
                pass
    with exclusive(tmp_path / "work", recipe_field):  # released once the run ends
        pass


def test_a_pickle_posing_as_a_checkpoint_is_refused_unread(base, tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("code ran",))

    fake = tmp_path / "toon-adapt" / "checkpoints" / "step_0000002"
    fake.mkdir(parents=True)
    torch.save({"x": Evil()}, fake / "state.safetensors")
    (fake / "state.json").write_text("{}")
    with pytest.raises(UserError, match="not a readable adaptation checkpoint"):
        adapt(settings(base, tmp_path, steps=4), resume="latest")
    assert "code ran" not in capsys.readouterr().out
