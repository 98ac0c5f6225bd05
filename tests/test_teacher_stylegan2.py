"""StyleGAN2 (rosinality layout) source and Toonify layer swapping, on tiny random generators."""

import argparse
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from toonfactory.recipe import load as load_recipe
from factory.errors import ModelLoadError, UserError
from factory.sources.generative import StyleGAN2SourceConfig
from factory.sample import Sample
from factory.models import stylegan2
from factory.teachers.toonify import ToonifyConfig, high_weight

ROOT = Path(__file__).resolve().parents[1]


def tiny(seed: int) -> stylegan2.Generator:
    torch.manual_seed(seed)
    channels = stylegan2.rosinality_channels(32, channel_multiplier=1, max_channels=16)
    generator = stylegan2.Generator(32, style_dim=16, n_mlp=2, channels=channels).eval()
    with torch.no_grad():  # trained generators have non-zero noise strengths and biases
        for name, param in generator.named_parameters():
            if name.endswith("noise.weight") or name.endswith("activate.bias"):
                param.normal_(0, 0.1)
    return generator


def save_rosinality(generator: stylegan2.Generator, path: Path) -> None:
    """Write ``generator`` as stylegan2-pytorch does (``{"g_ema": ..., "args": Namespace}``)."""
    args = argparse.Namespace(size=generator.size, latent=generator.style_dim)
    torch.save({"g_ema": generator.state_dict(), "args": args}, path)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stylegan2")
    base, toon = tiny(0), tiny(0)
    with torch.no_grad():  # a "fine-tune": every synthesis tensor nudged
        for name, param in toon.named_parameters():
            if not name.startswith("style."):
                param.add_(torch.randn_like(param) * 0.3)
    save_rosinality(base, folder / "base.pt")
    save_rosinality(toon, folder / "toon.pt")
    return folder / "base.pt", folder / "toon.pt", base


def source(checkpoint, **options):
    return StyleGAN2SourceConfig(kind="stylegan2", checkpoint=checkpoint, device="cpu", mean_latent_samples=256,
                                 **options).build()


def sample(index: int) -> Sample:
    return Sample.create(f"s{index:05d}", index, recipe_seed=7)


def test_keys_and_channels_follow_stylegan2_pytorch():
    assert stylegan2.rosinality_channels(1024) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256,
                                                    256: 128, 512: 64, 1024: 32}
    keys = set(tiny(0).state_dict())
    for key in ("style.1.weight", "style.2.bias", "input.input", "conv1.conv.weight", "conv1.conv.modulation.bias",
                "conv1.noise.weight", "conv1.activate.bias", "to_rgb1.bias", "convs.0.conv.blur.kernel",
                "convs.5.conv.weight", "to_rgbs.2.upsample.kernel", "noises.noise_6"):
        assert key in keys
    assert "noises.noise_7" not in keys and "convs.6.conv.weight" not in keys
    image = tiny(0).synthesis(torch.randn(2, 16))
    assert image.shape == (2, 3, 32, 32)


def test_rosinality_checkpoint_round_trip_and_architecture_read_back(checkpoints, tmp_path):
    base_path, _, base = checkpoints
    loaded = stylegan2.load_generator(base_path)
    assert loaded.size == 32 and loaded.style_dim == 16 and loaded.channels == base.channels
    w = torch.randn(1, 16)
    assert torch.equal(loaded.synthesis(w), base.synthesis(w))
    from safetensors.torch import save_file

    save_file({f"g_ema.{k}": v.contiguous() for k, v in base.state_dict().items()}, str(tmp_path / "g.safetensors"))
    assert torch.equal(stylegan2.load_generator(tmp_path / "g.safetensors").synthesis(w), base.synthesis(w))


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_bad_checkpoints_are_load_errors_and_never_run_code(tmp_path, capsys):
    with pytest.raises(ModelLoadError, match="missing.pt"):
        stylegan2.read_state(tmp_path / "missing.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": Evil()}, evil)
    with pytest.raises(ModelLoadError, match="evil.pt: cannot load model"):
        stylegan2.read_state(evil)
    assert "code ran" not in capsys.readouterr().out
    torch.save({"g_ema": {"foo": torch.zeros(1)}, "args": argparse.Namespace(size=32)}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="input.input"):
        stylegan2.read_state(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_bytes(pickle.dumps("hello")[:5])
    with pytest.raises(ModelLoadError, match="text.pt"):
        stylegan2.read_state(tmp_path / "text.pt")


def test_source_is_deterministic_per_sample_and_truncates(checkpoints):
    base_path = checkpoints[0]
    gen = source(base_path, truncation=0.8)
    a, again, other = gen.load(sample(0)), source(base_path, truncation=0.8).load(sample(0)), gen.load(sample(1))
    assert a.real.shape == (32, 32, 3) and a.real.dtype == np.uint8 and a.toon is None
    assert np.array_equal(a.real, again.real) and not np.array_equal(a.real, other.real)
    assert a.meta["source"]["latent_seed"] == again.meta["source"]["latent_seed"]
    mean = source(base_path, truncation=0.0, noise="zero")
    assert np.array_equal(mean.load(sample(0)).real, mean.load(sample(1)).real)
    toon_side = source(base_path, domain="toon").load(sample(2))
    assert toon_side.toon is not None and toon_side.real is None


def test_toonify_pairs_share_the_latent_and_swap_by_resolution(checkpoints):
    base_path, toon_path, _ = checkpoints
    gen = source(base_path)
    made = [gen.load(sample(i)) for i in range(3)]

    def toonify(batch_size=1, **options):
        config = ToonifyConfig(kind="toonify", base=base_path, toon=toon_path, device="cpu", batch_size=batch_size,
                               **options)
        return list(config.build()([Sample(s.key, s.index, s.seed, real=s.real, meta=dict(s.meta)) for s in made]))

    everything_low = toonify(swap_resolution=32)  # all layers from the base: toon == real
    assert all(np.array_equal(s.toon, s.real) for s in everything_low)
    batched = toonify(batch_size=2, swap_resolution=32)  # batched kernels may round differently, by one level
    assert all(np.abs(s.toon.astype(int) - s.real).max() <= 1 for s in batched)
    swapped = toonify(swap_resolution=8)
    assert all(s.toon.shape == s.real.shape and not np.array_equal(s.toon, s.real) for s in swapped)
    assert swapped[0].meta["teacher"]["swap_resolution"] == 8
    smooth = toonify(swap_resolution=8, transition=1.0)
    assert not np.array_equal(smooth[0].toon, swapped[0].toon)
    coarse_toon = toonify(swap_resolution=8, low_from="toon")
    assert not np.array_equal(coarse_toon[0].toon, swapped[0].toon)


def test_toonify_reuses_the_sources_generator(checkpoints, monkeypatch):
    base_path, toon_path, _ = checkpoints
    stylegan2.shared_generator.cache_clear()
    reads = []
    real_read = stylegan2.read_state
    monkeypatch.setattr(stylegan2, "read_state", lambda path, *a: reads.append(Path(path).name) or real_read(path, *a))
    made = source(base_path)
    teacher = ToonifyConfig(kind="toonify", base=base_path, toon=toon_path, device="cpu").build()
    assert teacher.base is made.generator
    assert reads == ["base.pt", "toon.pt"]


def test_high_weight_and_toonify_misuse(checkpoints, tmp_path):
    assert high_weight(16, 32, 0) == 0.0 and high_weight(64, 32, 0) == 1.0
    weights = [high_weight(r, 32, 1.0) for r in (4, 8, 16, 32, 64, 128)]
    assert weights == sorted(weights) and weights[3] < 0.5 < weights[4]
    base_path, toon_path, _ = checkpoints
    teacher = ToonifyConfig(kind="toonify", base=base_path, toon=toon_path, device="cpu").build()
    photo = Sample.create("p", 0, 0)
    photo.real, photo.meta["source"] = np.zeros((32, 32, 3), np.uint8), {"kind": "folder"}
    with pytest.raises(UserError, match="source.kind: stylegan2"):
        list(teacher([photo]))
    save_rosinality(tiny(1), tmp_path / "other.pt")
    with pytest.raises(UserError, match="teacher.base"):
        list(teacher([source(tmp_path / "other.pt").load(sample(0))]))
    channels = stylegan2.rosinality_channels(32, 1, max_channels=8)
    save_rosinality(stylegan2.Generator(32, 16, 2, channels), tmp_path / "narrow.pt")
    with pytest.raises(ModelLoadError, match="narrow.pt.*same architecture"):
        ToonifyConfig(kind="toonify", base=base_path, toon=tmp_path / "narrow.pt").build()


def test_toonify_recipe_validates():
    resolved = load_recipe(ROOT / "recipes" / "toonify-stylegan2.yaml")
    assert resolved.recipe.source.kind == "stylegan2" and resolved.recipe.teacher.kind == "toonify"
    assert type(resolved.recipe.source).generative
    from factory.errors import RecipeError

    with pytest.raises(RecipeError, match=r"teacher\.swap_resolution: .*power of two"):
        load_recipe(ROOT / "recipes" / "toonify-stylegan2.yaml", ["teacher.swap_resolution=48"])
