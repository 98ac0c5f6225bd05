"""Training the student on a dataset folder with accelerate (one process or `accelerate launch`).

Checkpoints are ``OUT/checkpoints/step_NNNNNNN/``: ``training.safetensors`` + ``training.json``
(models, optimizers, EMA, step, loss scaler) and ``rng_K.safetensors`` + ``rng_K.json`` (each
process's random states) for resuming, plus ``student.safetensors`` + ``student.json`` (the EMA
generator) for export and inference. Every state is tensors or JSON, saved and loaded here:
nothing in a checkpoint folder is ever unpickled (accelerate places devices, mixes precision and
runs the processes, but does not checkpoint). A checkpoint directory appears only once complete
(written as ``.tmp``, renamed last), so a crash never leaves a half checkpoint for ``--resume latest``.

One training run per folder at a time (it is locked); a folder that already holds a run is
only continued (``--resume``) or replaced (``--overwrite``) when asked.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np

from distill.config import DistillConfig
from distill.export import STUDENT_CONFIG, STUDENT_WEIGHTS, load_student
from factory.dataset.layout import read_recipe
from factory.errors import Interrupted, UserError
from factory.files import (FolderLock, append_text, folder_entries, output_folder, refuse_link, staged, subfolder,
                           write_atomic)
from factory.training import CheckpointFolder, load_optimizer, optimizer_state
from factory.training import grid as sample_grid

log = logging.getLogger(__name__)

TRAINING_TENSORS = "training.safetensors"
TRAINING_RECORD = "training.json"
TRAINING_FORMAT = "toonfactory-training/1"
OWN_OUTPUTS = ("checkpoints", "validation", "metrics.jsonl")


def checkpoint_folder(out_dir: Path, keep: int | None = None) -> CheckpointFolder:
    return CheckpointFolder(Path(out_dir) / "checkpoints", keep)


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints under ``out_dir``, oldest first."""
    return checkpoint_folder(out_dir).all()


def resolve_resume(resume: str, out_dir: Path) -> Path | None:
    """``latest`` (None when there is no checkpoint yet) or a checkpoint directory that can be resumed."""
    if resume == "latest":
        return checkpoint_folder(out_dir).latest()
    path = Path(resume)
    if not (path / STUDENT_CONFIG).is_file():
        raise UserError(f"{path}: --resume is not a training checkpoint (no {STUDENT_CONFIG}); use `latest` or a checkpoints/step_* folder")
    if not (path / TRAINING_RECORD).is_file():
        raise UserError(f"--resume {path}: no {TRAINING_RECORD} (a checkpoint of an older format, or an export): it can "
                        "be exported or run, not resumed")
    return path


def prepare_training(config: DistillConfig, data_dir: Path, out_dir: Path, resume: str | None, overwrite: bool) -> None:
    """Everything a run checks before it writes anything (the folder, tracking): a batch that fits in memory,
    the data, ``--resume`` and whether ``out_dir`` already holds a run that would be mixed with this one."""
    from factory.dataset.reader import check_shards

    refuse_oversized_batch(config)
    check_shards(data_dir)
    output_folder(out_dir)
    if resume:
        if resume != "latest":
            resolve_resume(resume, out_dir)
        return
    if folder_entries(out_dir) and not overwrite:
        raise UserError(f"--out {out_dir}: already holds files ({', '.join(p.name for p in folder_entries(out_dir)[:3])}); "
                        "continue its run with --resume latest, replace it with --overwrite, or choose a new folder")


PAIR_CHANNELS = 7  # a batch in memory: source, target and the face mask, stacked (distill.data.augment_pairs)


def refuse_oversized_batch(config: DistillConfig) -> None:
    """A batch whose input floats alone would take over a quarter of this machine's memory is refused before
    anything is read: distill.batch_size=100000 on 8 pairs of 64 px (drawn with replacement) asked for 15 GB."""
    side = config.size  # a batch is augmented whole, then cropped to its windows
    batch = config.batch_size * PAIR_CHANNELS * side * side * 4  # float32
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if 4 * batch > memory:
        raise UserError(f"distill.batch_size {config.batch_size}: one batch of {side} px pairs is {batch / 2**30:.1f} GB "
                        f"of input alone, over a quarter of this machine's {memory / 2**30:.0f} GB; lower it "
                        "(distill.gradient_accumulation keeps the batch the optimizer sees)")


def student_record(config: DistillConfig, step: int, frame: str | None = None) -> dict:
    """What export and inference need to rebuild the student, and the pairs' ``frame`` (face or scene) when known."""
    record = {
        "architecture": "pix2pix-unet",
        "student": config.student.model_dump(mode="json"),
        "direction": config.direction,
        "size": config.size,
        "step": step,
    }
    return record if frame is None else {**record, "frame": frame}


def dataset_frame(data_dir: Path) -> str | None:
    """The dataset's `output.frame` (face or scene), or None for shards without the factory's recipe.json."""
    saved = read_recipe(Path(data_dir))
    if saved is None:
        return None
    output = saved["recipe"].get("output") or {}
    if not isinstance(output, dict):
        raise UserError(f"{Path(data_dir) / 'recipe.json'}: field 'recipe.output' is {type(output).__name__}, "
                        "expected the `output:` section")
    return output.get("frame", "face")


def save_random_student(folder: Path, ngf: int = 16, depth: int = 5, size: int = 256, seed: int = 0,
                        residual: bool = True, upsample: str = "resize") -> Path:
    """A student checkpoint folder with random weights, for speed benchmarks and tests; returns ``folder``."""
    import torch
    from factory.files import save_tensors

    from distill.models import UNetGenerator

    config = DistillConfig(size=size, student={"ngf": ngf, "depth": depth, "residual": residual, "upsample": upsample})
    torch.manual_seed(seed)
    model = UNetGenerator(config.student)
    folder.mkdir(parents=True, exist_ok=True)
    with staged(folder / STUDENT_WEIGHTS) as tmp:
        save_tensors({k: v.contiguous() for k, v in model.state_dict().items()}, tmp)
    write_atomic(folder / STUDENT_CONFIG, json.dumps(student_record(config, step=0)).encode())
    return folder


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


def pair_scores(outputs: list[np.ndarray], pairs, prefix: str) -> dict[str, float]:
    """Mean PSNR and L1 (in [-1, 1] units) of ``outputs`` against the pairs' targets; with ``outputs``
    the pairs' own sources, the identity baseline a student must beat."""
    targets = [target for _, _, target in pairs]
    return {prefix + "psnr": float(np.mean([psnr(out, target) for out, target in zip(outputs, targets)])),
            prefix + "l1": float(np.mean([np.abs(out.astype(np.float32) - target).mean() / 127.5
                                          for out, target in zip(outputs, targets)]))}


def ema_with_warmup(max_decay: float):
    """EMA whose decay grows as (1 + n) / (10 + n) up to ``max_decay``: short runs are not dragged
    toward the random initialisation (a fixed 0.999 needs thousands of steps to forget it)."""
    import torch

    def update(averaged: list, current: list, num_averaged) -> None:
        n = float(num_averaged)
        decay = min(max_decay, (1.0 + n) / (10.0 + n))
        floats = [(a, c) for a, c in zip(averaged, current) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [c for _, c in floats], 1.0 - decay)
        for a, c in zip(averaged, current):  # counters such as BatchNorm's num_batches_tracked
            if not a.is_floating_point():
                a.copy_(c)

    return update


def read_json_record(path: Path) -> dict:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(record, dict):
        raise UserError(f"{path}: not a JSON object")
    return record


def flatten(state: dict, prefix: str) -> dict:
    """Tensors of a state dict under ``prefix``, detached, on the CPU, contiguous (what safetensors stores)."""
    return {prefix + key: value.detach().cpu().contiguous() for key, value in state.items()}


def unflatten(tensors: dict, prefix: str) -> dict:
    return {key[len(prefix):]: value for key, value in tensors.items() if key.startswith(prefix)}


def random_states() -> tuple[dict, dict]:
    """This process's random states (torch CPU and CUDA, numpy, python) as tensors and JSON."""
    import random

    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(keys.astype(np.int64))
    version, python_state, python_gauss = random.getstate()
    record = {"numpy": [kind, pos, has_gauss, gauss], "python": [version, list(python_state), python_gauss]}
    return tensors, record


def set_random_states(tensors: dict, record: dict) -> None:
    import random

    import torch

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, gauss = record["numpy"]
    np.random.set_state((kind, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, python_state, python_gauss = record["python"]
    random.setstate((version, tuple(python_state), python_gauss))


def learning_rate(config: DistillConfig, step: int) -> float:
    """``lr`` until the last ``lr_decay`` share of the steps, then falling linearly to zero (pix2pix's schedule)."""
    decay_steps = config.lr_decay * config.steps
    if decay_steps <= 0:
        return config.lr
    return config.lr * min(1.0, (config.steps - step) / decay_steps)


def ink_lines(images, width: int = 7, depth: float = 0.15):
    """1 where an image (-1..1) has a line: a stroke under ``width`` px darker than its surround by
    ``depth`` of the full grey range (a black-hat: the grey closing minus the image), else 0."""
    import torch.nn.functional as F

    grey = images.mean(1, keepdim=True)
    pad = width // 2
    closed = -F.max_pool2d(-F.max_pool2d(grey, width, 1, pad), width, 1, pad)
    return ((closed - grey) > 2 * depth).float()


def gradient_error(output, target):
    """Mean L1 between the horizontal and vertical neighbour differences of two NCHW batches."""
    dx = (output.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    dy = (output.diff(dim=-2) - target.diff(dim=-2)).abs().mean()
    return 0.5 * (dx + dy)


class Trainer:
    """One training run: models, optimizers, data and the loop, reading top to bottom in :meth:`run`."""

    def __init__(self, config: DistillConfig, data_dir: Path, out_dir: Path, tracker=None):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from torch.optim.swa_utils import AveragedModel

        from distill.models import PatchDiscriminator, UNetGenerator

        self.config, self.data_dir, self.out_dir = config, Path(data_dir), Path(out_dir)
        self.frame = dataset_frame(self.data_dir)
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision, gradient_accumulation_steps=config.gradient_accumulation
        )
        set_seed(config.seed)
        generator = UNetGenerator(config.student)
        if config.init is not None:
            generator.load_state_dict(initial_weights(config))
        self.ema = AveragedModel(generator, multi_avg_fn=ema_with_warmup(config.ema_decay), use_buffers=True)
        self.ema.to(self.accelerator.device)
        self.adversarial = config.discriminator.adversarial_weight > 0 or config.discriminator.feature_matching_weight > 0
        betas = tuple(config.betas)
        opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
        if self.adversarial:
            discriminator = PatchDiscriminator(config.discriminator)
            opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=betas)
            self.generator, self.discriminator, self.opt_g, self.opt_d = self.accelerator.prepare(
                generator, discriminator, opt_g, opt_d
            )
        else:
            self.generator, self.opt_g = self.accelerator.prepare(generator, opt_g)
            self.discriminator = self.opt_d = None
        self.step_count = 0
        self.identity_scores: dict[str, float] | None = None
        self.tracker = tracker if self.accelerator.is_main_process else None

    # -- checkpoints ---------------------------------------------------------------------------

    def _modules(self) -> dict:
        modules = {"generator": self.accelerator.unwrap_model(self.generator), "ema": self.ema}
        if self.discriminator is not None:
            modules["discriminator"] = self.accelerator.unwrap_model(self.discriminator)
        return modules

    def _optimizers(self) -> dict:
        return {name: opt for name, opt in (("opt_g", self.opt_g), ("opt_d", self.opt_d)) if opt is not None}

    def load(self, path: Path) -> None:
        """Restore every state from safetensors and JSON; refuses a checkpoint of another student."""
        record_path = Path(path) / TRAINING_RECORD
        record = read_json_record(record_path)
        if record.get("format") != TRAINING_FORMAT:
            raise UserError(f"{record_path}: field `format` is {record.get('format')!r}, expected {TRAINING_FORMAT!r}")
        try:
            self._restore(path, record)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise UserError(f"{record_path}: damaged checkpoint record or states ({type(exc).__name__}: {exc}); "
                            "resume from another checkpoints/step_* folder") from None
        log.info("resumed from %s at step %d", path, self.step_count)

    def _restore(self, path: Path, record: dict) -> None:
        """Every module, optimizer, scaler and random state from the checkpoint at ``path``."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        record_path = Path(path) / TRAINING_RECORD
        for section in ("student", "discriminator"):
            mine = getattr(self.config, section).model_dump(mode="json")
            theirs = record.get("distill", {}).get(section, {})
            for key in sorted(set(mine) | set(theirs)):
                if mine.get(key) != theirs.get(key):
                    raise UserError(f"{record_path}: field distill.{section}.{key} is {theirs.get(key)!r} in the checkpoint "
                                    f"but {mine.get(key)!r} in this run; resume with the same settings or start a new --out")
        try:
            tensors = load_file(str(Path(path) / TRAINING_TENSORS))
            rng = load_file(str(Path(path) / f"rng_{self.accelerator.process_index}.safetensors"))
        except (OSError, SafetensorError) as exc:
            raise UserError(f"--resume {path}: cannot read its states ({exc})") from None
        for name, module in self._modules().items():
            module.load_state_dict(unflatten(tensors, name + "."))
        for name, optimizer in self._optimizers().items():
            plain = record[name]  # a list: the param groups alone, as checkpoints before factory.training wrote them
            load_optimizer(optimizer, tensors, plain if isinstance(plain, dict) else {"param_groups": plain, "state": {}}, name)
        if self.accelerator.scaler is not None and record.get("scaler"):
            self.accelerator.scaler.load_state_dict(record["scaler"])
        set_random_states(rng, read_json_record(Path(path) / f"rng_{self.accelerator.process_index}.json"))
        self.step_count = int(record["step"])

    def save(self) -> Path:
        """Write a complete checkpoint for the current step; prune the oldest beyond the limit."""
        from factory.files import save_tensors

        folder = checkpoint_folder(self.out_dir, self.config.keep_checkpoints)
        staging, main = folder.staging(self.step_count), self.accelerator.is_main_process
        if main:
            folder.start(self.step_count)
        self.accelerator.wait_for_everyone()
        tensors, record = random_states()
        save_tensors(tensors, staging / f"rng_{self.accelerator.process_index}.safetensors")
        (staging / f"rng_{self.accelerator.process_index}.json").write_text(json.dumps(record))
        self.accelerator.wait_for_everyone()
        if main:
            tensors = {}
            for name, module in self._modules().items():
                tensors.update(flatten(module.state_dict(), name + "."))
            record = {"format": TRAINING_FORMAT, "step": self.step_count,
                      "distill": self.config.model_dump(mode="json"),
                      "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None}
            for name, optimizer in self._optimizers().items():
                saved, record[name] = optimizer_state(optimizer, name)
                tensors.update(saved)
            save_tensors(tensors, staging / TRAINING_TENSORS)
            (staging / TRAINING_RECORD).write_text(json.dumps(record, indent=1))
            weights = {k: v.detach().cpu().contiguous() for k, v in self.ema.module.state_dict().items()}
            save_tensors(weights, staging / STUDENT_WEIGHTS)
            (staging / STUDENT_CONFIG).write_text(json.dumps(student_record(self.config, self.step_count, self.frame), indent=2))
            log.info("saved checkpoint %s", folder.finish(self.step_count))
        self.accelerator.wait_for_everyone()
        return folder.final(self.step_count)

    # -- one optimizer step ----------------------------------------------------------------------

    def step(self, batches) -> dict[str, float]:
        """One optimizer step over ``gradient_accumulation`` micro-batches; returns mean losses."""
        import torch
        import torch.nn.functional as F

        config, accelerator = self.config, self.accelerator
        disc = config.discriminator
        totals: dict[str, float] = {}
        lr = learning_rate(config, self.step_count)
        for optimizer in self._optimizers().values():
            for group in optimizer.param_groups:
                group["lr"] = lr
        for _ in range(config.gradient_accumulation):
            source, target = (t.to(accelerator.device, non_blocking=True) for t in next(batches))
            with accelerator.accumulate(*(m for m in (self.generator, self.discriminator) if m is not None)):
                with accelerator.autocast():
                    fake = self.generator(source)
                losses = {}
                if self.adversarial:
                    # Real and fake in one discriminator call: one DDP forward per backward.
                    with accelerator.autocast():
                        logits, _ = self.discriminator(torch.cat([source, source]), torch.cat([target, fake.detach()]))
                    real_logits, fake_logits = logits.float().chunk(2)
                    loss_d = 0.5 * (
                        F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                    )
                    self._optimize(loss_d, self.discriminator, self.opt_d)
                    losses["loss_d"] = loss_d.detach()
                error = (fake.float() - target).abs()
                l1 = error.mean()
                if config.ink_weight > 0:
                    error = error * (1 + config.ink_weight * ink_lines(target))
                loss_g = config.l1_weight * error.mean()
                losses["l1"] = l1.detach()
                if config.gradient_weight > 0:
                    gradient = gradient_error(fake.float(), target)
                    loss_g = loss_g + config.l1_weight * config.gradient_weight * gradient
                    losses["gradient"] = gradient.detach()
                if self.adversarial:
                    # The generator's loss sees the discriminator frozen and outside DDP's hooks.
                    plain_d = accelerator.unwrap_model(self.discriminator)
                    plain_d.requires_grad_(False)
                    with accelerator.autocast():
                        fake_logits, fake_features = plain_d(source, fake)
                    adv = F.binary_cross_entropy_with_logits(fake_logits.float(), torch.ones_like(fake_logits.float()))
                    loss_g = loss_g + disc.adversarial_weight * adv
                    losses["adv"] = adv.detach()
                    if disc.feature_matching_weight > 0:
                        with torch.no_grad(), accelerator.autocast():
                            _, real_features = plain_d(source, target)
                        fm = sum(F.l1_loss(f.float(), r.float()) for f, r in zip(fake_features, real_features))
                        fm = fm / len(fake_features)
                        loss_g = loss_g + disc.feature_matching_weight * fm
                        losses["fm"] = fm.detach()
                    plain_d.requires_grad_(True)
                self._optimize(loss_g, self.generator, self.opt_g)
                losses["loss_g"] = loss_g.detach()
            names = sorted(losses)
            values = accelerator.gather(torch.stack([losses[n].float() for n in names])[None]).mean(0)
            if not torch.isfinite(values).all():
                self._diverged(dict(zip(names, values.tolist())))
            for name, value in zip(names, values.tolist()):
                totals[name] = totals.get(name, 0.0) + value / config.gradient_accumulation
        self.ema.update_parameters(accelerator.unwrap_model(self.generator))
        self.step_count += 1
        return totals

    def _optimize(self, loss, model, optimizer) -> None:
        """Backward, clip (on the step that syncs gradients), step, clear."""
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients and self.config.grad_clip > 0:
            self.accelerator.clip_grad_norm_(model.parameters(), self.config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def _diverged(self, losses: dict[str, float]) -> None:
        raise checkpoint_folder(self.out_dir).diverged(
            str(self.out_dir), self.step_count + 1, losses,
            "Lower distill.lr, raise distill.grad_clip or use distill.mixed_precision=no, then --resume latest.")

    # -- validation ------------------------------------------------------------------------------

    def validate(self, pairs) -> dict[str, float]:
        """Run the EMA generator on the held-out pairs; write and report the input/teacher/student grid.
        Scores beside the identity baseline (the input as output): `identity_psnr`, `identity_l1`."""
        import torch

        from distill.data import to_image, to_tensor
        from factory.images import encode_png

        model = self.ema.module.eval()
        outputs = []
        with torch.no_grad():
            for start in range(0, len(pairs), self.config.batch_size):
                chunk = pairs[start : start + self.config.batch_size]
                batch = torch.stack([to_tensor(source) for _, source, _ in chunk]).to(self.accelerator.device)
                outputs.extend(to_image(image) for image in model(batch))
        if self.identity_scores is None:  # the same pairs every time: scored once
            self.identity_scores = pair_scores([source for _, source, _ in pairs], pairs, "identity_")
        metrics = {**pair_scores(outputs, pairs, ""), **self.identity_scores}
        shown = pairs[: self.config.val_images]
        grid = sample_grid([s for _, s, _ in shown] + [t for _, _, t in shown] + outputs[: len(shown)], len(shown))
        write_atomic(subfolder(self.out_dir, "validation") / f"step_{self.step_count:07d}.png", encode_png(grid))
        if self.tracker is not None:
            for name, value in metrics.items():
                self.tracker.report_scalar("validation", name, value, self.step_count)
            self.tracker.report_image("validation", "input / teacher / student", grid, self.step_count)
        return metrics

    # -- the loop --------------------------------------------------------------------------------

    def run(self, on_step: Callable[[int, int, dict], None] | None = None) -> Path:
        from distill.data import train_loader, validation_pairs

        config, accelerator = self.config, self.accelerator
        main = accelerator.is_main_process
        pairs = validation_pairs(config, self.data_dir, limit=max(config.val_images, 32)) if main else []
        if main and not pairs:
            log.warning("%s: no held-out pairs (val_fraction %s); validation skipped", self.data_dir, config.val_fraction)
        batches = iter(train_loader(config, self.data_dir, seed_offset=self.step_count))
        log_path = self.out_dir / "metrics.jsonl"
        last = checkpoints(self.out_dir)[-1] if checkpoints(self.out_dir) else None
        while self.step_count < config.steps:
            losses = self.step(batches)
            step = self.step_count
            record = {"step": step, **losses}
            if main and pairs and (step % config.val_every == 0 or step == config.steps):
                record.update({f"val_{k}": v for k, v in self.validate(pairs).items()})
            if main and (step % config.log_every == 0 or step == config.steps or "val_psnr" in record):
                append_text(log_path, json.dumps(record) + "\n")
                if self.tracker is not None:
                    for name, value in record.items():
                        if name != "step":
                            self.tracker.report_scalar("train" if not name.startswith("val_") else "validation", name, value, step)
            if main and on_step is not None:
                on_step(step, config.steps, record)
            if step % config.save_every == 0 or step == config.steps:
                last = self.save()
        accelerator.wait_for_everyone()
        return last


def initial_weights(config: DistillConfig) -> dict:
    """The weights of the student ``config.init`` names, checked against this run's `student` section."""
    try:
        model, _ = load_student(config.init)
    except UserError as exc:
        raise UserError(f"distill.init: {exc}") from None
    theirs = model.config
    if theirs != config.student:
        differ = ", ".join(f"{k} {getattr(theirs, k)!r} there, {v!r} here"
                           for k, v in config.student.model_dump().items() if getattr(theirs, k) != v)
        raise UserError(f"distill.init: {config.init} is another student ({differ}); set distill.student to match")
    return model.state_dict()


def train(
    config: DistillConfig,
    data_dir: Path,
    out_dir: Path,
    resume: str | None = None,
    tracker=None,
    on_step: Callable[[int, int, dict], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Train the student on ``data_dir``'s pairs; returns the last checkpoint directory.

    ``resume`` is ``latest`` or a checkpoint folder; without it ``out_dir`` must be new or empty,
    unless ``overwrite`` (its checkpoints, validation grids and metrics are then deleted first).
    ``tracker`` receives scalars and validation grids (the caller starts and closes it; None: off);
    ``on_step(step, total, record)`` is called on the main process after every step (progress bars).
    """
    out_dir = Path(out_dir)
    prepare_training(config, data_dir, out_dir, resume, overwrite)
    trainer = Trainer(config, data_dir, out_dir, tracker)
    lock = FolderLock(out_dir, f"toonfactory train --out {out_dir}", kind="train", earlier="metrics.jsonl",
                      debris=("checkpoints/step_*.tmp",)) \
        if trainer.accelerator.is_main_process else nullcontext()
    with lock:
        if overwrite and not resume and trainer.accelerator.is_main_process:
            for name in OWN_OUTPUTS:
                target = refuse_link(out_dir / name)
                shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        trainer.accelerator.wait_for_everyone()
        if resume:
            path = resolve_resume(resume, out_dir)
            if path is not None:
                trainer.load(path)
            else:
                log.info("%s: no checkpoint to resume from; starting at step 0", out_dir)
        try:
            return trainer.run(on_step)
        except KeyboardInterrupt:
            found = checkpoints(out_dir)
            kept = f"the last checkpoint is {found[-1]}" if found else "no checkpoint was saved yet"
            raise Interrupted(f"interrupted at step {trainer.step_count}; {kept}; continue with --resume latest "
                              f"(--out {out_dir})") from None
