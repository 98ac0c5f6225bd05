"""What both adaptation methods share: their common settings, the image folder, the training loop,
validation images and checkpoints.

A run works in ``work_dir`` (the LoRA's output folder, or ``<out stem>-adapt/`` beside a StyleGAN2
output): ``checkpoints/step_NNNNNNN/`` (``state.safetensors``: trained tensors, optimizer tensors
and the RNG; ``state.json``: step, settings, optimizer hyper-parameters), ``validation/*.png`` and,
once the output is written, ``adapt.json``. Nothing is ever pickled. A checkpoint appears only once
complete (written as ``.tmp``, renamed last).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import Field

from factory.config import Strict
from factory.errors import UserError
from factory.files import refuse_link, remove_debris, remove_staged, subfolder, write_atomic
from factory.images import IMAGE_SUFFIXES, BadImage, list_images, read_image
from factory.training import CheckpointFolder, grid, load_optimizer, optimizer_state

log = logging.getLogger(__name__)

STATE_TENSORS = "state.safetensors"
STATE_RECORD = "state.json"
RECORD = "adapt.json"
# Settings a resumed run may change; any other difference means another adaptation.
RESUMABLE = {"steps", "checkpoint_every", "keep_checkpoints", "validate_every", "validation_images",
             "validation_steps", "device"}

FieldName = Callable[[str], str]


def recipe_field(name: str) -> str:
    """How a message names a setting read from a recipe's ``adapt:`` section."""
    return f"adapt.{name}"


class AdaptSettings(Strict):
    """Settings every method has; each method sets its own defaults for steps and lr."""

    images: Path = Field(description="a folder of example images (a .txt beside an image is its caption)")
    base: Path = Field(description="the model to adapt")
    out: Path = Field(description="where the adapted weights go")
    steps: int = Field(ge=1)
    lr: float = Field(gt=0)
    batch_size: int = Field(1, ge=1, le=64)
    checkpoint_every: int = Field(100, ge=1, description="steps between checkpoints (--resume latest)")
    keep_checkpoints: int = Field(2, ge=1)
    validate_every: int = Field(100, ge=0, description="steps between validation images; 0: none")
    validation_images: int = Field(4, ge=1, le=16)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def work_dir(self) -> Path:
        return self.out

    def settings(self) -> dict:
        """What makes two runs the same adaptation (all but the settings a resume may change)."""
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in RESUMABLE}


@dataclass
class Example:
    path: Path
    image: np.ndarray
    caption: str | None


def read_examples(folder: Path, field: str) -> list[Example]:
    """The readable images of ``folder`` (not recursive) with their captions; unreadable ones are skipped."""
    if not Path(folder).is_dir():
        raise UserError(f"{field}: {folder} is not a folder of images")
    examples = []
    for path in list_images(Path(folder), recursive=False):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            image = read_image(path)
        except BadImage as exc:
            log.warning("%s: skipped (%s)", path, exc.reason)
            continue
        caption = path.with_suffix(".txt")
        text = caption.read_text().strip() if caption.is_file() else ""
        examples.append(Example(path, image, text or None))
    if not examples:
        raise UserError(f"{field}: {folder} holds no readable images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return examples


class Checkpoints(CheckpointFolder):
    """An adaptation's checkpoints: one safetensors file and one JSON record each."""

    def resolve(self, resume: str | None, field: FieldName) -> Path | None:
        """``latest`` (None when there is none yet), a checkpoint folder, or None to start afresh."""
        found = self.all()
        if resume is None:
            if found:
                raise UserError(f"{field('out')}: {self.root} holds checkpoints of an unfinished adaptation; "
                                "pass --resume latest to continue it or choose another output")
            return None
        if resume == "latest":
            return found[-1] if found else None
        if not (Path(resume) / STATE_RECORD).is_file():
            raise UserError(f"--resume {resume}: not an adaptation checkpoint (no {STATE_RECORD}); "
                            "use `latest` or a checkpoints/step_* folder")
        return Path(resume)

    def save(self, step: int, tensors: dict, record: dict) -> Path:
        from factory.files import save_tensors

        staging = self.start(step)
        save_tensors(tensors, staging / STATE_TENSORS)
        (staging / STATE_RECORD).write_text(json.dumps(record, indent=1))
        return self.finish(step)

    @staticmethod
    def load(path: Path) -> tuple[dict, dict]:
        """A checkpoint's tensors and record; anything unreadable is the user's to fix (never unpickled)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(Path(path) / STATE_TENSORS)), json.loads((Path(path) / STATE_RECORD).read_text())
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"--resume {path}: not a readable adaptation checkpoint ({exc})") from None


def finished(config: AdaptSettings, field: FieldName) -> bool:
    """Whether ``config.out`` already holds this very adaptation; another one there is an error."""
    path = config.work_dir() / RECORD
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    if record.get("settings") != config.settings():
        changed = sorted(k for k in config.settings() if record.get("settings", {}).get(k) != config.settings()[k])
        raise UserError(f"{field('out')}: {config.out} holds an adaptation made with other settings "
                        f"({', '.join(changed)}); choose another output or remove it")
    return record["step"] >= config.steps and Path(config.out).exists()


def check_inputs(config: AdaptSettings, field: FieldName, optional: tuple[str, ...] = ()) -> None:
    """The base (and the optional paths given) exist; images are read by the method."""
    for name in ("base", *optional):
        path = getattr(config, name)
        if path is not None and not Path(path).exists():
            raise UserError(f"{field(name)}: {path} not found")


def mixed_precision(name: str, device, field: FieldName) -> str:
    """accelerate's mixed-precision mode: ``auto`` is fp16 on CUDA, none on the CPU."""
    if name == "auto":
        return "fp16" if device.type == "cuda" else "no"
    if name != "no" and device.type != "cuda":
        raise UserError(f"{field('mixed_precision')}: {name} needs a CUDA device; use `no` or `auto` on the CPU")
    return name


class Adaptation:
    """One run of one method: the loop, checkpoints and validation; a method subclass provides the
    models through ``train_step``, ``samples``, ``tensors``, ``optimizers`` and ``export``."""

    def __init__(self, config: AdaptSettings, field: FieldName, precision: str = "no", accumulation: int = 1):
        import torch
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        from factory.tracking import Tracker

        set_seed(config.seed)  # new layers (LoRA, a fresh discriminator) start the same in every run
        self.config, self.field = config, field
        self.work = config.work_dir()
        self.accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=accumulation,
                                       cpu=config.device == "cpu")
        self.device = self.accelerator.device
        self.tracker: Tracker = Tracker()
        self.on_step: Callable[[int, int, dict], None] | None = None
        self.step = 0
        self.rng = torch.Generator().manual_seed(config.seed + self.accelerator.process_index)
        self.checkpoints = Checkpoints(self.work / "checkpoints", config.keep_checkpoints)

    # -- what a method provides ---------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns its losses."""
        raise NotImplementedError

    def samples(self) -> list[np.ndarray]:
        """Validation images (RGB uint8) from the current weights, the same draws every time."""
        raise NotImplementedError

    def tensors(self) -> dict:
        """The tensors training changes, by name (live: a resume copies into them)."""
        raise NotImplementedError

    def optimizers(self) -> dict:
        raise NotImplementedError

    def export(self) -> None:
        """Write the adapted weights to ``config.out`` in the form the teacher loads."""
        raise NotImplementedError

    # -- the loop -------------------------------------------------------------------------------

    def run(self, start: Path | None) -> Path:
        if start is not None:
            self.load(start)
        began = time.perf_counter()
        first = self.step
        while self.step < self.config.steps:
            losses = self.train_step()
            if not all(math.isfinite(v) for v in losses.values()):
                self.diverged(losses)
            self.step += 1
            for name, value in losses.items():
                self.tracker.report_scalar("loss", name, value, self.step)
            if self.on_step:
                self.on_step(self.step, self.config.steps, losses)
            if self.config.validate_every and self.step % self.config.validate_every == 0:
                self.validate()
            if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                self.save()
        if self.accelerator.is_main_process:
            self.export()
            record = {"kind": self.config.kind, "settings": self.config.settings(), "step": self.step,
                      "output": str(self.config.out),
                      "seconds_per_step": (time.perf_counter() - began) / max(1, self.step - first)}
            write_atomic(self.work / RECORD, json.dumps(record, indent=1).encode())
        self.accelerator.wait_for_everyone()
        return Path(self.config.out)

    def diverged(self, losses: dict[str, float]) -> None:
        raise self.checkpoints.diverged(self.field("lr"), self.step + 1, losses, "Lower the learning rate, then resume.")

    def validate(self) -> None:
        from factory.images import encode_png

        images = self.samples()
        if not self.accelerator.is_main_process:
            return
        sheet = grid(images, columns=4)
        write_atomic(subfolder(self.work, "validation") / f"step_{self.step:07d}.png", encode_png(sheet))
        self.tracker.report_image("validation", "samples", sheet, self.step)

    def save(self) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.tensors().items()}
        record = {"step": self.step, "settings": self.config.settings(), "optimizers": {}}
        for name, optimizer in self.optimizers().items():
            saved, record["optimizers"][name] = optimizer_state(optimizer, f"optimizer_{name}")
            tensors.update(saved)
        tensors["rng"] = self.rng.get_state()
        if self.accelerator.scaler is not None:
            record["scaler"] = self.accelerator.scaler.state_dict()
        if self.accelerator.is_main_process:
            log.info("saved checkpoint %s", self.checkpoints.save(self.step, tensors, record))
        self.accelerator.wait_for_everyone()

    def load(self, path: Path) -> None:
        import torch

        tensors, record = Checkpoints.load(path)
        if record["settings"] != self.config.settings():
            raise UserError(f"--resume {path}: a checkpoint of an adaptation with other settings")
        live = self.tensors()
        saved = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        if set(saved) != set(live):
            raise UserError(f"--resume {path}: its tensors do not match this model")
        with torch.no_grad():
            for name, tensor in live.items():
                tensor.copy_(saved[name])
        for name, optimizer in self.optimizers().items():
            load_optimizer(optimizer, tensors, record["optimizers"][name], f"optimizer_{name}")
        self.rng.set_state(tensors["rng"])
        if self.accelerator.scaler is not None and "scaler" in record:
            self.accelerator.scaler.load_state_dict(record["scaler"])
        self.step = int(record["step"])
        log.info("resumed from %s at step %d", path, self.step)


def adapt(config, *, resume: str | None = None, field: FieldName = recipe_field,
          start_tracker: Callable[[], object] | None = None,
          on_step: Callable[[int, int, dict], None] | None = None) -> tuple[Path, bool]:
    """Run one adaptation (``config.kind`` picks the method); returns (the output, whether it trained).

    An output that already holds this adaptation is kept as it is; one that holds another is an error.
    Inputs and models are checked before ``start_tracker()`` is called, so a mistake leaves nothing behind.
    """
    if finished(config, field):
        return Path(config.out), False
    check_inputs(config, field, config.optional_paths())
    start = Checkpoints(config.work_dir() / "checkpoints", config.keep_checkpoints).resolve(resume, field)
    trainer = config.build(field)
    with exclusive(config.work_dir(), field, output=Path(config.out)):
        if start_tracker is not None and trainer.accelerator.is_main_process:
            trainer.tracker = start_tracker()
        trainer.on_step = on_step
        try:
            return trainer.run(start), True
        finally:
            trainer.tracker.close()


@contextlib.contextmanager
def exclusive(work: Path, field: FieldName, output: Path | None = None):
    """Hold ``work/.lock`` for the run: a second run into the same output stops at once (exit 2).
    The operating system releases the lock when the process dies, however it dies; what a killed run
    left (temporary files, checkpoint and export staging folders, and the temporary files of ``output``
    when it lives outside ``work``: a StyleGAN2 file beside it) is removed once it is held."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    refuse_link(work / ".lock")
    fd = os.open(work / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{field('out')}: another process is adapting into {work}") from None
        remove_debris(work, ("checkpoints/step_*.tmp", ".export-*"))
        if output is not None:
            remove_staged(output)
        yield
