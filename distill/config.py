"""The `distill:` and `export:` recipe sections: how the student is built, trained and exported."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from factory.config import Strict, validate_options
from factory.errors import UserError

OPSETS = range(7, 21)  # what torch's TorchScript-based ONNX exporter writes
MAX_PIXELS = 4_000_000  # larger images are decoded reduced: the model's memory grows with the pixels
DEFAULT_MODEL = ""  # the model given first converts every face no rule assigns
KEEP = "keep"  # an assignment that leaves a face as it is


class StudentConfig(Strict):
    """The pix2pix U-Net generator: ``depth`` down/up levels starting at ``ngf`` channels."""

    ngf: int = Field(32, ge=4, le=256, description="channels of the first encoder level")
    depth: int = Field(5, ge=2, le=8, description="down-sampling levels; inputs must be multiples of 2**depth")
    max_channels: int = Field(512, ge=8, description="channel cap of the deeper levels")
    norm: Literal["batch", "instance", "none"] = "batch"
    dropout: float = Field(0.0, ge=0.0, le=0.9, description="dropout in the innermost decoder levels")
    upsample: Literal["transpose", "resize"] = Field(
        "resize", description="decoder up-sampling: nearest x2 then a 3x3 convolution, which cannot leave a checkerboard, "
        "or pix2pix's 4x4 transposed convolutions (in training; for inference both run as transposed convolutions)")
    residual: bool = Field(True, description="predict a change of the input (output = input + U-Net, clamped); aligned pairs converge much faster")


class DiscriminatorConfig(Strict):
    """The PatchGAN discriminator on (input, output) pairs; weight 0 trains with L1 only."""

    ndf: int = Field(64, ge=4, le=256)
    layers: int = Field(3, ge=1, le=6)
    adversarial_weight: float = Field(1.0, ge=0.0)
    feature_matching_weight: float = Field(0.0, ge=0.0, description="L1 between discriminator features")


class DistillConfig(Strict):
    """Training of the student on the pairs of a dataset folder."""

    direction: Literal["real2toon", "toon2real"] = "real2toon"
    size: int = Field(256, ge=16, le=2048, description="side the pairs are resized to, in pixels")
    crop: int | None = Field(None, ge=16, description="train on random crop x crop windows of the size x size pairs: "
                             "the teacher's scale at a smaller step's cost; validation sees whole pairs")
    student: StudentConfig = StudentConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()
    l1_weight: float = Field(100.0, ge=0.0)
    ink_weight: float = Field(0.0, ge=0.0, description="extra L1 weight on the target's ink lines (strokes darker "
                              "than their surround): 4 counts a line pixel five times")
    gradient_weight: float = Field(0.0, ge=0.0, description="extra L1 between the output's and the target's "
                                   "neighbour differences (x and y), in l1 units: texture costs where the teacher is flat")
    steps: int = Field(2000, ge=1, description="optimizer steps")
    batch_size: int = Field(8, ge=1, description="per device, per accumulation step")
    gradient_accumulation: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0.0)
    lr_decay: float = Field(0.0, ge=0.0, le=1.0, description="share of the steps at the end over which lr falls "
                            "linearly to zero (pix2pix: 0.5): a GAN's last checkpoint settles instead of oscillating")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.5, 0.999)
    grad_clip: float = Field(1.0, ge=0.0, description="max gradient norm; 0 turns clipping off")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="EMA of the generator used for validation and export")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    workers: int = Field(2, ge=0, description="data loader processes")
    cache_mb: int = Field(2048, ge=0, description="decode the training pairs once into memory when they fit in this "
                          "many MB (0: always stream them from the shards)")
    shuffle_buffer: int = Field(256, ge=1, description="samples shuffled together when streaming")
    val_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="share of keys held out, chosen by key hash")
    val_every: int = Field(500, ge=1)
    val_images: int = Field(8, ge=1, description="pairs shown in the validation grid")
    save_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    flip: bool = Field(True, description="random horizontal flip of both sides")
    scale_jitter: float = Field(0.1, ge=0.0, le=0.5, description="random scale/shift of both sides")
    colour_jitter: float = Field(0.0, ge=0.0, le=1.0, description="random hue turn (up to 60 degrees x this) and "
                                 "saturation scale (1 +- this / 2) of both sides: colours the people never had")
    input_grain: float = Field(0.0, ge=0.0, le=1.0, description="film grain added to the photo side only, its "
                               "standard deviation drawn per pair up to this (in -1..1 units): texture the target never has")
    init: Path | None = Field(None, description="start from a trained student's weights (a checkpoint folder or an "
                              "exported .safetensors with its .json), e.g. the face student for a whole-frame one; "
                              "its `student` section must be this run's")
    face_windows: float = Field(0.0, ge=0.0, le=1.0, description="share of the training windows (`crop`) centred on "
                                "a face of the pair (its json's face boxes): a scene pair's faces are a small share "
                                "of a random window")
    seed: int = 0

    @model_validator(mode="after")
    def _size_fits_depth(self):
        if self.size % (2**self.student.depth):
            raise ValueError(f"size {self.size} must be a multiple of 2**student.depth = {2**self.student.depth}")
        if self.crop is not None and (self.crop > self.size or self.crop % (2**self.student.depth)):
            raise ValueError(f"crop {self.crop} must be at most size {self.size} and a multiple of 2**student.depth = "
                             f"{2**self.student.depth} (a smaller size needs a smaller crop, or crop null: whole pairs)")
        return self


class ExportConfig(Strict):
    """What `toonfactory run` exports after training."""

    formats: list[Literal["safetensors", "onnx", "torchscript", "tensorrt"]] = ["safetensors", "onnx"]
    opset: int = Field(17, ge=11, le=OPSETS.stop - 1)
    tolerance: float = Field(1e-3, gt=0.0, description="max abs difference allowed between ONNX Runtime and PyTorch")


MIN_WHOLE_SIDE = 64  # a smaller working side leaves nothing of a frame to draw


class InferConfig(Strict):
    """How `infer` runs the student: checked once, here (``InferConfig.of(...)`` names each mistaken option),
    then passed whole to :func:`distill.infer.infer`, :class:`distill.infer.Inference` and
    :class:`distill.tracks.FaceTracks`."""

    mode: Literal["whole", "face"] | None = Field(
        None, description="whole (the frame) or face (detect, align, paste back); default: the student's own (face for "
                          "one trained on face crops, whole for scene pairs and students that do not say)")
    batch_size: int = Field(8, ge=1, description="inputs per model call (on a CPU also at most 2^18 pixels: one 640×384 frame, four 256 px faces)")
    max_frames: int | None = Field(None, ge=1, description="stop each video after this many frames")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:1 (PyTorch models)")
    half: bool = Field(False, description="fp16 on CUDA (PyTorch models)")
    detector: str = Field("mediapipe", description="face detector for mode face (mediapipe, dlib, haar, anime)")
    cascade: Path | None = Field(None, description="the LBP cascade XML of detector anime")
    person_only: Literal["keep", "stylize"] | None = Field(
        None, description="convert only people: keep (the background as it is) or stylize (inpainted, then converted)")
    max_pixels: int = Field(MAX_PIXELS, ge=65_536, description="larger images and frames are decoded reduced to this many pixels")
    whole_side: int = Field(640, ge=0, description="whole frames with a longer side are converted reduced to it and "
                                                   "enlarged back, so faces come at the sizes the student learnt (0: full size)")
    track: bool = Field(True, description="face mode on videos: track faces (ids, smoothing, VIDEO.tracks.json)")
    detect_every: int = Field(5, ge=1, description="run the face detector every K frames; follow faces in between")
    smooth: bool = Field(True, description="stabilise each track's alignment keypoints")
    embedder: str = Field("dlib", description="face embedder re-identifying people across cuts: dlib, an .onnx, or none")
    assign: list[str] = Field([], description="TRACK_ID=MODEL or ACTOR=MODEL; MODEL may be `keep`")
    margin: float = Field(1.0, gt=0.0, description="face crop margin around the aligned face")
    max_faces: int = Field(4, ge=1, description="faces converted per frame")
    queue_size: int = Field(4, ge=1, description="batches queued between the reader, the model and the writer")

    @field_validator("whole_side")
    @classmethod
    def _whole_side_a_frame(cls, side: int) -> int:
        if 0 < side < MIN_WHOLE_SIDE:
            raise ValueError(f"{side} px is a thumbnail, not a frame: 0 (full size) or at least {MIN_WHOLE_SIDE}")
        return side

    @model_validator(mode="before")
    @classmethod
    def _mode_from_options(cls, data):
        """--person-only works on whole frames and --assign on faces: either says the mode none was given."""
        if isinstance(data, dict) and data.get("mode") is None and (data.get("person_only") or data.get("assign")):
            return {**data, "mode": "whole" if data.get("person_only") else "face"}
        return data

    @model_validator(mode="after")
    def _modes_agree(self):
        if self.person_only and self.mode != "whole":
            raise ValueError("--person-only works on whole frames (--mode whole); face mode already keeps the rest")
        if self.assignment.rules and self.mode != "face":
            raise ValueError("--assign maps faces to models: it needs --mode face")
        return self

    @classmethod
    def of(cls, **options) -> InferConfig:
        """The config of these options (the others at their defaults); a UserError names each mistaken one."""
        return validate_options(cls, options)

    def for_student(self, mode: str) -> InferConfig:
        """This config with ``mode`` (the student's own, :attr:`distill.infer.Student.mode`) where none was given."""
        return self if self.mode is not None else self.model_copy(update={"mode": mode})

    @property
    def assignment(self) -> Assignment:
        return parse_assignments(self.assign)

    @property
    def tracks_videos(self) -> bool:
        """Whether face tracks are made for videos (and so whether an embedder is needed)."""
        return self.mode == "face" and self.track


@dataclass
class Assignment:
    """Which model converts which face: rules by track id (``"3"``) or recognised actor name, each
    naming a model (or ``keep``); faces no rule names get the default model."""

    rules: dict[str, str] = field(default_factory=dict)

    def model_for(self, track: int | None, actor: str | None) -> str:
        if track is not None and str(track) in self.rules:
            return self.rules[str(track)]
        return self.rules.get(actor, DEFAULT_MODEL) if actor else DEFAULT_MODEL

    @property
    def models(self) -> set[str]:
        return {m for m in self.rules.values() if m != KEEP}

    @property
    def actors(self) -> set[str]:
        return {key for key in self.rules if not key.isdigit()}


def parse_assignments(items: list[str]) -> Assignment:
    """``ID=MODEL`` or ``ACTOR=MODEL`` items (MODEL a checkpoint, .onnx, or ``keep``)."""
    rules = {}
    for item in items:
        key, sep, model = item.partition("=")
        if not sep or not key.strip() or not model.strip():
            raise UserError(f"--assign {item!r}: expected TRACK_ID=MODEL or ACTOR=MODEL")
        if key.strip() in rules:
            raise UserError(f"--assign {item!r}: {key.strip()!r} is assigned twice")
        rules[key.strip()] = model.strip()
    return Assignment(rules)
