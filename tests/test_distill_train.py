"""Training the student: the loss falls, resume restores the exact optimizer state, NaN stops cleanly."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import toon_of, write_checkpoint, write_dataset  # noqa: E402

from distill.config import DistillConfig  # noqa: E402
from distill.train import PAIR_CHANNELS, checkpoints, dataset_frame, train  # noqa: E402
from factory.training import TrainingDiverged  # noqa: E402
from factory.errors import RecipeError, UserError  # noqa: E402


def tiny(**overrides) -> DistillConfig:
    base = dict(
        size=64, batch_size=4, workers=0, lr=2e-3, ema_decay=0.5, val_fraction=0.15, val_every=1000,
        log_every=1, shuffle_buffer=16, student={"ngf": 8, "depth": 3},
        discriminator={"ndf": 8, "layers": 2, "adversarial_weight": 0.0},
    )
    return DistillConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("pairs"), shards=3, per_shard=8, size=64)


def test_a_few_steps_decrease_the_l1_loss(dataset, tmp_path):
    losses = []
    checkpoint = train(tiny(steps=16, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: losses.append(r["l1"]))
    assert len(losses) == 16
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4
    assert checkpoint == tmp_path / "checkpoints" / "step_0000016"
    record = json.loads((checkpoint / "student.json").read_text())
    assert record["step"] == 16 and record["student"]["ngf"] == 8
    assert "frame" not in record  # shards without the factory's recipe.json: what they hold is not known
    grids = sorted((tmp_path / "validation").glob("*.png"))
    assert [g.name for g in grids] == ["step_0000016.png"]  # validated at the end, with the EMA student


def test_adversarial_training_with_feature_matching_runs(dataset, tmp_path):
    config = tiny(steps=2, discriminator={"ndf": 8, "layers": 2, "feature_matching_weight": 1.0}, gradient_accumulation=2)
    records = []
    train(config, dataset, tmp_path, on_step=lambda s, t, r: records.append(r))
    assert {"adv", "fm", "loss_d", "l1", "loss_g"} <= set(records[-1])
    assert all(torch.isfinite(torch.tensor(list(r.values()), dtype=torch.float64)).all() for r in records)


def test_resume_continues_from_the_saved_step_with_identical_optimizer_state(dataset, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from distill.train import TRAINING_TENSORS, Trainer

    first = train(tiny(steps=2, save_every=2), dataset, tmp_path)
    saved = {k.removeprefix("opt_g."): v for k, v in load_file(str(first / TRAINING_TENSORS)).items() if k.startswith("opt_g.")}

    restored = {}
    original = Trainer.load

    def capture(self, path):
        original(self, path)
        restored["state"] = copy.deepcopy(self.opt_g.state_dict())

    monkeypatch.setattr(Trainer, "load", capture)
    steps = []
    last = train(tiny(steps=3, save_every=2), dataset, tmp_path, resume="latest", on_step=lambda s, t, r: steps.append(s))

    assert steps == [3]
    assert last.name == "step_0000003"
    state = restored["state"]["state"]
    assert {f"{i}.{name}" for i, entry in state.items() for name in entry} == set(saved)
    for key, value in saved.items():
        index, name = key.split(".", 1)
        assert torch.equal(torch.as_tensor(state[int(index)][name]), value)
    resumed = load_file(str(last / TRAINING_TENSORS))
    assert all(int(v) == 3 for k, v in resumed.items() if k.startswith("opt_g.") and k.endswith(".step"))


def test_a_checkpoint_written_before_the_shared_training_module_still_resumes(dataset, tmp_path):
    from distill.train import TRAINING_RECORD

    first = train(tiny(steps=2, save_every=2), dataset, tmp_path)
    record = json.loads((first / TRAINING_RECORD).read_text())
    record["opt_g"] = record["opt_g"]["param_groups"]  # the older record: the param groups alone
    (first / TRAINING_RECORD).write_text(json.dumps(record))
    assert train(tiny(steps=3, save_every=2), dataset, tmp_path, resume="latest").name == "step_0000003"


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch):
    from distill.models import UNetGenerator

    calls = {"n": 0}
    forward = UNetGenerator.forward

    def poisoned(self, x):
        calls["n"] += 1
        out = forward(self, x)
        return out * float("nan") if calls["n"] > 2 else out

    monkeypatch.setattr(UNetGenerator, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"diverged at step 3 .*step_0000002"):
        train(tiny(steps=5, save_every=2, val_fraction=0.0), dataset, tmp_path)
    assert [p.name for p in checkpoints(tmp_path)] == ["step_0000002"]


def with_recipe_json(folder: Path, distill: dict | None, tracking: dict | None = None) -> Path:
    """A dataset folder's recipe.json as `generate` writes it (only the sections training reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {"distill": distill, "tracking": tracking or {"mode": "none"}}
    (folder / "recipe.json").write_text(json.dumps({"hash": "test", "origin": "r.yaml", "recipe": recipe}))
    return folder


def test_training_settings_come_from_defaults_the_dataset_recipe_then_set(tmp_path):
    from toonfactory.cli.student import load_training_sections

    sections, source = load_training_sections(tmp_path / "bare", None, [])
    assert sections.distill == DistillConfig() and source == "defaults"
    sections, source = load_training_sections(with_recipe_json(tmp_path / "null", None), None, [])
    assert sections.distill == DistillConfig() and source == "defaults" and sections.tracking.mode == "none"

    data = with_recipe_json(tmp_path / "data", {"size": 96, "steps": 7, "student": {"ngf": 16, "depth": 3}})
    sections, source = load_training_sections(data, None, [])
    assert (sections.distill.size, sections.distill.steps, sections.distill.student.ngf) == (96, 7, 16)
    assert source == f"distill from {data / 'recipe.json'}"
    sections, source = load_training_sections(data, None, ["distill.steps=3000", "tracking.mode=offline"])
    assert (sections.distill.size, sections.distill.steps, sections.tracking.mode) == (96, 3000, "offline")
    assert source == f"distill from {data / 'recipe.json'}, --set distill.steps=3000"


def test_a_given_recipe_replaces_the_dataset_section_and_set_overrides_both(tmp_path):
    from toonfactory.cli.student import load_training_sections

    data = with_recipe_json(tmp_path / "data", {"size": 96, "steps": 7, "student": {"ngf": 16, "depth": 3}})
    recipe = tmp_path / "r.yaml"
    recipe.write_text("distill:\n  steps: 3\n")
    sections, source = load_training_sections(data, recipe, [])
    assert (sections.distill.size, sections.distill.steps) == (256, 3)  # the whole section, not a merge
    assert sections.tracking.mode == "none" and source == f"--recipe {recipe}"  # r.yaml has no tracking:
    sections, source = load_training_sections(data, recipe, ["distill.size=64"])
    assert (sections.distill.size, sections.distill.steps) == (64, 3)
    assert source == f"--recipe {recipe}, --set distill.size=64"


def test_bad_training_settings_name_their_file_and_field(tmp_path):
    from toonfactory.cli.student import load_training_sections

    data = with_recipe_json(tmp_path / "data", {"size": 100, "student": {"ngf": 16, "depth": 3}})
    with pytest.raises(RecipeError, match="size 100 must be a multiple") as info:
        load_training_sections(data, None, [])
    assert info.value.path == str(data / "recipe.json")
    with_recipe_json(data, {"student": {"widht": 3}})
    with pytest.raises(RecipeError, match=r"distill\.student\.widht") as info:
        load_training_sections(data, None, [])
    assert info.value.path == str(data / "recipe.json")

    recipe = tmp_path / "r.yaml"
    recipe.write_text("distill:\n  size: 100\n  student: {ngf: 16, depth: 3}\n")
    with pytest.raises(RecipeError, match="size 100 must be a multiple") as info:
        load_training_sections(tmp_path / "bare", recipe, [])
    assert info.value.path == str(recipe)
    with pytest.raises(RecipeError, match=r"--set distill\.student\.widht=3: distill\.student\.widht") as info:
        load_training_sections(tmp_path / "bare", None, ["distill.student.widht=3"])
    assert info.value.path == "--set"
    assert load_training_sections(tmp_path / "bare", recipe, ["distill.size=96"])[0].distill.size == 96


@pytest.mark.parametrize("record", [[1, 2], {"recipe": {"distill": {}}}, {"hash": "x", "recipe": 5}])
def test_a_dataset_recipe_json_of_another_shape_is_named(tmp_path, record):
    """Each ended `train` (and `generate` into the folder) in an AttributeError or KeyError traceback."""
    from factory.dataset.layout import read_recipe
    from toonfactory.cli.student import load_training_sections

    (tmp_path / "recipe.json").write_text(json.dumps(record))
    for read in (lambda: load_training_sections(tmp_path, None, []), lambda: read_recipe(tmp_path)):
        with pytest.raises(UserError, match=r"recipe.json: not a recipe record of `toonfactory generate`"):
            read()
    (tmp_path / "recipe.json").write_text(json.dumps({"hash": "x", "recipe": {"output": 5}}))
    with pytest.raises(UserError, match=r"recipe.json: field 'recipe.output' is int"):
        dataset_frame(tmp_path)


@pytest.mark.parametrize("override, field, problem", [
    ("distill.betas=[nan,0.9]", r"distill\.betas\[0\]", "finite"), ("distill.betas=[1.5,0.9]", r"distill\.betas\[0\]", "less than 1"),
    ("distill.l1_weight=inf", r"distill\.l1_weight", "finite"), ("distill.scale_jitter=nan", r"distill\.scale_jitter", "finite")])
def test_a_nan_infinite_or_out_of_range_number_is_refused_naming_its_field(tmp_path, override, field, problem):
    """NaN betas reached Adam as a ValueError traceback; an infinite l1_weight trained until the loss diverged."""
    from toonfactory.cli.student import load_training_sections

    with pytest.raises(RecipeError, match=rf"{field}: Input should be (a )?{problem}"):
        load_training_sections(tmp_path / "bare", None, [override])


def test_a_batch_too_large_for_this_machine_is_refused_before_anything_is_read(tmp_path):
    """distill.batch_size=100000 on 8 pairs of 64 px drew 100000 pairs with replacement: 14 GB, minutes of paging."""
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    huge = memory // (4 * PAIR_CHANNELS * 64 * 64 * 4) + 1  # inputs alone over a quarter of the memory
    with pytest.raises(UserError, match=rf"distill.batch_size {huge}: one batch of 64 px pairs is .* GB of input alone"):
        train(tiny(batch_size=huge), tmp_path / "nowhere", tmp_path / "out")  # refused before the data is looked at
    assert not (tmp_path / "out").exists()


def test_missing_shards_is_a_user_error(tmp_path):

    with pytest.raises(UserError, match="no \\*.tar shards"):
        train(tiny(steps=1), tmp_path, tmp_path / "out")


def test_ema_warms_up_instead_of_clinging_to_the_initialisation():
    import torch
    from torch.optim.swa_utils import AveragedModel

    from distill.train import ema_with_warmup

    model = torch.nn.BatchNorm2d(2)
    ema = AveragedModel(model, multi_avg_fn=ema_with_warmup(0.999), use_buffers=True)
    with torch.no_grad():
        model.weight.fill_(10.0)
    model.num_batches_tracked += 3
    ema.update_parameters(model)  # the copy at n = 0
    ema.update_parameters(model)  # n = 1: decay 2/11, not 0.999
    assert torch.allclose(ema.module.weight, torch.full((2,), 10.0))
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema.update_parameters(model)  # n = 2: decay 3/12
    assert torch.allclose(ema.module.weight, torch.full((2,), 2.5))
    assert int(ema.module.num_batches_tracked) == 3


def test_cached_batches_augment_both_sides_identically_and_repeat_from_their_seed():
    from distill.data import PairCache

    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    cache = PairCache(torch.cat([images, images], dim=1), tiny(size=32, batch_size=4, scale_jitter=0.2))
    batches = cache.batches(seed=3)
    seen = []
    for _ in range(6):
        source, target = next(batches)
        assert source.shape == (4, 3, 32, 32) and torch.equal(source, target)
        seen.append(source)
    plain = images.float() / 127.5 - 1
    changed = sum(not any(torch.allclose(s, p, atol=1e-4) for p in plain) for batch in seen for s in batch)
    assert changed > 0  # jittered or flipped
    again = PairCache(torch.cat([images, images], dim=1), tiny(size=32, batch_size=4, scale_jitter=0.2)).batches(seed=3)
    assert torch.equal(next(again)[0], seen[0][0:4])


def test_pairs_are_streamed_when_they_do_not_fit_the_cache(dataset, tmp_path):
    from distill.data import PairCache

    assert PairCache.load(tiny(cache_mb=0), dataset) is None
    cached = PairCache.load(tiny(), dataset)
    assert cached is not None and 0 < len(cached) < 24  # the held-out keys stay out
    losses = []
    train(tiny(steps=4, cache_mb=0, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: losses.append(r["l1"]))
    assert len(losses) == 4


def test_the_student_beats_the_identity_baseline_on_held_out_pairs(dataset, tmp_path):
    records = []
    train(tiny(steps=40, val_every=40, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: records.append(r))
    last = records[-1]
    assert {"val_l1", "val_psnr", "val_identity_l1", "val_identity_psnr"} <= set(last)
    assert last["val_l1"] < 0.8 * last["val_identity_l1"]
    assert last["val_psnr"] > last["val_identity_psnr"] + 1.0


def test_crops_train_at_the_pairs_scale_on_windows_of_both_sides_alike(dataset, tmp_path):
    from distill.data import PairCache, PairDecoder

    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    config = tiny(size=64, crop=32, batch_size=4, scale_jitter=0.0, flip=False)
    no_faces = torch.zeros(6, 1, 64, 64, dtype=torch.uint8)
    source, target = next(PairCache(torch.cat([images, images, no_faces], dim=1), config).batches(seed=1))
    assert source.shape == (4, 3, 32, 32) and torch.equal(source, target)
    plain = images.float() / 127.5 - 1  # each window is a piece of one pair, at the pairs' scale
    windows = [p[:, y : y + 32, x : x + 32] for p in plain for y in range(33) for x in range(33)]
    assert all(any(torch.allclose(s, w) for w in windows) for s in source)
    sample = {"__key__": "k", "real.png": _png(images[0]), "toon.png": _png(images[0])}
    real, toon = PairDecoder(config, augment=True).images(sample)
    assert real.shape == (32, 32, 3) and (real == toon).all()  # the streamed path crops too
    records = []
    train(tiny(steps=4, crop=32, val_every=4, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: records.append(r))
    assert "val_psnr" in records[-1]  # validation sees whole 64 px pairs
    with pytest.raises(ValueError, match="crop 52 must be at most size 64 and a multiple of 2\\*\\*student.depth = 8"):
        tiny(crop=48 + 4)


def test_face_windows_are_centred_near_the_pairs_faces():
    import json

    from distill.data import PairCache, PairDecoder

    config = tiny(size=128, crop=32, batch_size=8, scale_jitter=0.0, flip=False, face_windows=1.0)
    images = torch.zeros(8, 3, 128, 128, dtype=torch.uint8)
    faces = torch.zeros(8, 1, 128, 128, dtype=torch.uint8)
    faces[..., 90:100, 100:110] = 255  # one small face near the bottom right corner
    images[..., 90:100, 100:110] = 255
    source, _ = next(PairCache(torch.cat([images, images, faces], dim=1), config).batches(seed=3))
    assert ((source > 0).flatten(1).any(1)).all()  # every window holds part of the face
    anywhere = tiny(size=128, crop=32, batch_size=8, scale_jitter=0.0, flip=False)
    counts = [(s > 0).any().item() for _ in range(4)
              for s in next(PairCache(torch.cat([images, images, faces], dim=1), anywhere).batches(seed=_))[0]]
    assert sum(counts) < len(counts) / 2  # by chance a 32 px window of 128 rarely finds it
    box = {"faces": {"faces": [{"box": [100, 90, 110, 100]}]}}  # x0 y0 x1 y1: the streamed path reads the json
    sample = {"__key__": "k", "real.png": _png(images[0]), "toon.png": _png(images[0]), "json": json.dumps(box).encode()}
    decoder = PairDecoder(config, augment=True)
    assert all((decoder.images(sample)[0] > 0).any() for _ in range(8))
    for odd in ({"faces": {"faces": [1, {"box": "x"}, {"box": [1, 2]}]}}, {"faces": []}, [3]):  # not ours: random windows
        sample["json"] = json.dumps(odd).encode()
        assert decoder.images(sample)[0].shape == (32, 32, 3)


def test_init_starts_from_a_trained_students_weights(dataset, tmp_path):
    from distill.export import load_student
    from distill.train import Trainer

    start = write_checkpoint(tmp_path / "face", ngf=8, depth=3, size=64, seed=5)
    trainer = Trainer(tiny(init=start), dataset, tmp_path / "run")
    expected = load_student(start)[0].state_dict()
    for module in (trainer.generator, trainer.ema.module):
        assert all(torch.equal(value, expected[name]) for name, value in module.state_dict().items())
    with pytest.raises(UserError, match=r"distill.init: .* is another student \(ngf 8 there, 16 here"):
        Trainer(tiny(init=start, student={"ngf": 16, "depth": 3}), dataset, tmp_path / "wide")
    with pytest.raises(UserError, match=r"distill.init: .*nowhere.*cannot load model"):
        Trainer(tiny(init=tmp_path / "nowhere"), dataset, tmp_path / "none")


def _png(image) -> bytes:
    from factory.images import encode_png

    return encode_png(image.permute(1, 2, 0).numpy())


def test_ink_lines_are_thin_dark_strokes_and_weigh_more_in_the_loss(dataset, tmp_path):
    from distill.train import ink_lines

    image = torch.full((1, 3, 32, 32), 0.6)
    image[..., 10:12, 4:28] = -0.8  # a 2 px line on pale skin
    image[..., 20:, 20:] = -0.9  # a dark region: flat, not a line
    ink = ink_lines(image)[0, 0]
    assert ink[10:12, 6:26].all() and ink.sum() < 2 * 24 + 8
    assert not ink[24:, 24:].any()
    def inked(real):
        toon = toon_of(real)
        toon[20:22, 8:56] = 0
        return toon

    lined = write_dataset(tmp_path / "lined", shards=1, per_shard=8, toon=inked)
    records = []
    train(tiny(steps=2, ink_weight=4.0, save_every=100), lined, tmp_path / "run", on_step=lambda s, t, r: records.append(r))
    assert records[-1]["loss_g"] > 1.05 * 100 * records[-1]["l1"]  # line pixels count five times


def test_colour_jitter_turns_both_sides_alike_and_keeps_grey_grey(dataset, tmp_path):
    from distill.data import colour_matrices, jittered, recolour

    grey = torch.linspace(-1, 1, 5).view(1, 1, 5, 1).expand(1, 3, 5, 4)
    matrix = colour_matrices(1, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(recolour(grey, matrix), grey, atol=1e-5)  # ink and paper keep their grey
    red = torch.tensor([0.4, -0.3, -0.3]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    turned = torch.stack([recolour(red, colour_matrices(1, 1.0, torch.Generator().manual_seed(s)))[0, :, 0, 0]
                          for s in range(8)])
    assert (turned - red[0, :, 0, 0]).abs().max() > 0.2  # the hue moves
    luma = turned @ torch.tensor([0.299, 0.587, 0.114])
    assert torch.allclose(luma, luma[0], atol=1e-4)  # lightness stays
    assert torch.allclose(recolour(red, colour_matrices(1, 0.0, torch.Generator())), red, atol=1e-5)
    images = torch.rand(4, 3, 8, 8) * 2 - 1
    source, target = next(jittered(iter([(images, images.clone())]), 0.8, 0.0, seed=1))
    assert torch.equal(source, target) and not torch.allclose(source, images)
    records = []
    train(tiny(steps=2, colour_jitter=0.5, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: records.append(r))
    assert len(records) == 2


def test_learning_rate_holds_then_falls_linearly_to_zero_over_the_last_share_of_steps():
    from distill.train import learning_rate

    config = tiny(steps=100, lr=1e-3, lr_decay=0.5)
    rates = [learning_rate(config, step) for step in range(100)]
    assert rates[:51] == [1e-3] * 51
    assert all(a > b for a, b in zip(rates[50:], rates[51:]))  # falling every step of the last half
    assert rates[-1] == pytest.approx(1e-3 / 50) and rates[75] == pytest.approx(0.5e-3)
    assert {learning_rate(tiny(steps=100, lr=1e-3), step) for step in range(100)} == {1e-3}


def test_gradient_loss_charges_texture_where_the_target_is_flat(dataset, tmp_path):
    from distill.train import gradient_error

    flat = torch.zeros(1, 3, 16, 16)
    grainy = flat + 0.2 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    shifted = flat + 0.5  # the wrong tone but no texture: L1's business, not this loss's
    assert gradient_error(grainy, flat) > 0.1 and gradient_error(shifted, flat) == 0
    records = []
    train(tiny(steps=2, gradient_weight=1.0, save_every=100), dataset, tmp_path, on_step=lambda s, t, r: records.append(r))
    assert records[-1]["gradient"] > 0 and records[-1]["loss_g"] > 100 * (records[-1]["l1"] + records[-1]["gradient"]) * 0.99


def test_input_grain_roughens_the_photo_side_only():
    from distill.data import grained, jittered

    images = torch.zeros(4, 3, 32, 32)
    source, target = next(jittered(iter([(images, images.clone())]), 0.0, 0.3, seed=1))
    assert torch.equal(target, images)
    per_image = source.std(dim=(1, 2, 3))
    assert per_image.max() > 0.05 and per_image.max() < 0.3 and len(set(per_image.tolist())) == 4  # strength per pair
    assert torch.allclose(source[:, 0], source[:, 1])  # grey grain: no colour speckle
    odd = grained(torch.zeros(1, 3, 30, 18), 0.5, torch.Generator().manual_seed(0))
    assert odd.shape == (1, 3, 30, 18) and odd.abs().max() <= 1


def test_a_student_records_that_it_learnt_from_face_crops(tiny_dataset, tmp_path):
    checkpoint = train(tiny(steps=1, save_every=1), tiny_dataset, tmp_path)
    assert json.loads((checkpoint / "student.json").read_text())["frame"] == "face"  # infer converts faces by default


def test_a_checkpoint_exported_into_is_not_pruned_with_the_old_ones(dataset, tmp_path):
    """`toonfactory export CHECKPOINT` writes CHECKPOINT/export; resuming pruned that step, export and all."""
    from distill.export import export

    out = tmp_path / "run"
    train(tiny(steps=2, save_every=1, keep_checkpoints=1), dataset, out)
    first = out / "checkpoints" / "step_0000001"
    assert not first.exists()  # pruned as usual
    exported = export(out / "checkpoints" / "step_0000002", "onnx", out / "checkpoints" / "step_0000002" / "export")
    train(tiny(steps=4, save_every=1, keep_checkpoints=1), dataset, out, resume="latest")
    assert [p.name for p in checkpoints(out)] == ["step_0000002", "step_0000004"]
    assert exported.is_file() and (exported.parent.parent / "student.safetensors").is_file()


def test_a_checkpoint_exported_into_is_moved_aside_when_a_resume_saves_its_step_again(dataset, tmp_path):
    """Resuming from an older step saves the later steps again; one holding an export was deleted, export and all."""
    import shutil

    from distill.export import export

    out = tmp_path / "run"
    train(tiny(steps=2, save_every=1), dataset, out)
    step1, step2 = out / "checkpoints" / "step_0000001", out / "checkpoints" / "step_0000002"
    exported = export(step2, "onnx", step2 / "export")
    held = exported.read_bytes()
    shutil.copytree(step1, tmp_path / "older")
    train(tiny(steps=2, save_every=1), dataset, out, resume=str(tmp_path / "older"))
    aside = out / "checkpoints" / "replaced" / "step_0000002-1"
    assert (aside / "export" / exported.name).read_bytes() == held
    assert (aside / "student.safetensors").is_file()  # the weights it was exported from go with it
    assert not (step2 / "export").exists() and (step2 / "student.safetensors").is_file()
    assert [p.name for p in checkpoints(out)] == ["step_0000001", "step_0000002"]
