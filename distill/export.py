"""Loading a trained student and exporting it: safetensors, ONNX (checked), TorchScript, TensorRT."""

from __future__ import annotations

import io
import json
import logging
import shutil
from pathlib import Path

import numpy as np

from distill.config import OPSETS
from factory.errors import ModelLoadError, UserError
from factory.files import FolderLock, output_folder, sha256_file, staged, write_atomic

log = logging.getLogger(__name__)

FORMATS = ("safetensors", "onnx", "torchscript", "tensorrt")
SUFFIXES = {"safetensors": ".safetensors", "onnx": ".onnx", "torchscript": ".torchscript.pt", "tensorrt": ".engine"}
STUDENT_WEIGHTS = "student.safetensors"  # what a checkpoint folder holds
STUDENT_CONFIG = "student.json"


class ExportMismatch(UserError):
    """An exported model that does not reproduce the PyTorch student within the tolerance."""


def student_files(path: Path) -> tuple[Path, Path]:
    """(weights, config json) for a checkpoint folder or a ``.safetensors`` file with its ``.json`` beside it."""
    path = Path(path)
    if path.is_dir():
        weights, config = path / STUDENT_WEIGHTS, path / STUDENT_CONFIG
    else:
        weights, config = path, path.with_suffix(".json")
    if not weights.is_file():
        raise ModelLoadError(weights, f"no student weights (expected a checkpoint folder with {STUDENT_WEIGHTS} or a .safetensors file)")
    if not config.is_file():
        raise ModelLoadError(config, "no student config json beside the weights")
    return weights, config


def read_record(config_path: Path) -> dict:
    try:
        record = json.loads(Path(config_path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(config_path, f"invalid JSON ({exc})") from None
    return checked_record(record, config_path)


def checked_record(record, where) -> dict:
    """A student record (student.json, or an ONNX export's metadata) whose `student` section and `size` build a
    student; anything else is a ModelLoadError naming ``where`` and the field."""
    from pydantic import ValidationError

    from distill.config import DistillConfig

    if not isinstance(record, dict) or record.get("architecture") != "pix2pix-unet" or "student" not in record:
        raise ModelLoadError(where, "field `architecture` must be pix2pix-unet, with a `student` section")
    if not isinstance(record["student"], dict):
        raise ModelLoadError(where, "field `student` must be a section (ngf, depth, ...)")
    # Students saved before `upsample` existed were all built with transposed convolutions.
    student = {"upsample": "transpose", **record["student"]}
    try:
        config = DistillConfig.model_validate({"size": record.get("size"), "student": student})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(map(str, error["loc"]))
        raise ModelLoadError(where, f"field `{field or 'size'}`: {error['msg']}") from None
    return {**record, "size": config.size, "student": student}


def load_student(path: Path):
    """The EMA student in eval mode and its record (architecture, direction, size) from a checkpoint."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from distill.config import StudentConfig
    from distill.models import UNetGenerator

    weights, config_path = student_files(path)
    record = read_record(config_path)
    model = UNetGenerator(StudentConfig(**record["student"]))
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(weights, f"not a safetensors file ({exc}); other formats (pickles) are never loaded") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:  # one line: the first tensor that differs, and how many more
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ModelLoadError(weights, f"weights do not match the `student` section of {config_path.name}: "
                             f"{problems[0]}{more}") from None
    return model.eval(), record


def export(checkpoint: Path, format: str, out: Path, opset: int = 17, tolerance: float = 1e-3,
           replace: bool = False) -> Path:
    """Write the student of ``checkpoint`` to folder ``out`` in ``format``; returns the model file.

    Every format gets ``student.json`` beside it (architecture, direction, size; the weights' sha256);
    ONNX also carries the record in its metadata. ONNX and TorchScript exports are checked against PyTorch on
    random inputs; every model file is written under a temporary name and takes its own only once
    checked. A folder holding another student's export is refused, unless ``replace``: then that
    student's model files go first, so the folder never mixes two students.
    """
    if format not in FORMATS:
        raise UserError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    if format in ("onnx", "tensorrt") and opset not in OPSETS:
        raise UserError(f"--opset {opset}: choose an ONNX opset from {OPSETS.start} to {OPSETS.stop - 1}")
    if tolerance != tolerance:  # NaN: no difference is ever above it, so the parity check would pass anything
        raise UserError(f"--tolerance {tolerance}: give the max abs difference allowed against PyTorch, a number (1e-3)")
    if format == "tensorrt":
        require_tensorrt()
    out = output_folder(out)
    weights = student_files(checkpoint)[0]
    if Path(out).resolve() == weights.parent.resolve():
        raise UserError(f"--out {out}: is the checkpoint's own folder; the export goes beside it (default "
                        "CHECKPOINT/export)")
    model, record = load_student(checkpoint)
    sha = sha256_file(weights)
    with FolderLock(out, f"toonfactory export --format {format}", kind="export"):
        _make_room(out, sha, replace)
        return _export(checkpoint, model, record, format, out, opset, tolerance, sha)


def _make_room(out: Path, sha: str, replace: bool) -> None:
    """Refuse (or, with ``replace``, clear) an export folder whose student.json names other weights."""
    held = out / STUDENT_CONFIG
    try:
        theirs = json.loads(held.read_text()).get("weights_sha256") if held.is_file() else None
    except (UnicodeDecodeError, ValueError, AttributeError):
        theirs = None
    if theirs is None or theirs == sha:  # a new folder, this student's own, or an export made before the sha was kept
        return
    if not replace:
        raise UserError(f"--out {out}: holds the export of another student ({held}: weights sha256 {str(theirs)[:12]}, "
                        f"this one {sha[:12]}); nothing there is replaced: choose another folder, or --overwrite "
                        "to replace that export")
    for suffix in SUFFIXES.values():
        (out / f"student{suffix}").unlink(missing_ok=True)


def _export(checkpoint: Path, model, record: dict, format: str, out: Path, opset: int, tolerance: float,
            sha: str) -> Path:
    target = out / f"student{SUFFIXES[format]}"
    if format == "safetensors":
        with staged(target) as tmp:
            shutil.copyfile(student_files(checkpoint)[0], tmp)
    elif format == "onnx":
        export_onnx(model, record, target, opset, tolerance)
    elif format == "torchscript":
        export_torchscript(model, record, target, tolerance)
    else:
        export_tensorrt(model, record, target, opset)
    write_atomic(out / "student.json", json.dumps({**record, "weights_sha256": sha}, indent=2).encode())
    log.info("exported %s to %s", format, target)
    return target


def _probe_inputs(model, size: int) -> list[np.ndarray]:
    """Random inputs at two batch sizes and two image sizes, for the parity checks."""
    rng = np.random.default_rng(0)
    other = size + model.multiple if size <= 256 else size // 2
    return [rng.uniform(-1, 1, shape).astype(np.float32) for shape in ((1, 3, size, size), (2, 3, other, size))]


def _check(name: str, path: Path, run, model, size: int, tolerance: float) -> float:
    import torch

    worst = 0.0
    with torch.no_grad():
        for probe in _probe_inputs(model, size):
            expected = model(torch.from_numpy(probe)).numpy()
            worst = max(worst, float(np.abs(run(probe) - expected).max()))
    if worst > tolerance:
        raise ExportMismatch(f"{path}: {name} output differs from PyTorch by {worst:.2e} > tolerance {tolerance:.0e}")
    log.info("%s parity: max abs difference %.2e", name, worst)
    return worst


def export_onnx(model, record: dict, path: Path, opset: int = 17, tolerance: float = 1e-3) -> float:
    """ONNX with dynamic batch, height and width, of the student's inference form (:func:`for_inference`);
    returns the max abs difference to the PyTorch ``model``."""
    import onnx
    import onnxruntime as ort
    import torch

    from distill.models import for_inference

    size = min(record["size"], 256)
    dummy = torch.zeros(1, 3, size, size)
    axes = {0: "batch", 2: "height", 3: "width"}
    with staged(path) as tmp:
        torch.onnx.export(
            for_inference(model), (dummy,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["output"], dynamic_axes={"input": axes, "output": axes},
        )
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = "student", json.dumps(record)
        onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        return _check("ONNX Runtime", path, lambda x: session.run(None, {"input": x})[0], model, size, tolerance)


def export_torchscript(model, record: dict, path: Path, tolerance: float = 1e-3) -> float:
    import warnings

    import torch

    from distill.models import for_inference

    size = min(record["size"], 256)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream, still widely deployed
        traced = torch.jit.trace(for_inference(model), torch.zeros(1, 3, size, size))
        buffer = io.BytesIO()  # torch's C++ writer aborts the process on a full disk (exit 134, no line)
        torch.jit.save(traced, buffer)
        with staged(path) as tmp:
            with open(tmp, "r+b") as handle:
                handle.write(buffer.getbuffer())
            loaded = torch.jit.load(str(tmp))
            return _check("TorchScript", path, lambda x: loaded(torch.from_numpy(x)).numpy(), model, size, tolerance)


def require_tensorrt() -> None:
    """Raise a clear UserError unless `tensorrt` is installed and a CUDA GPU is present."""
    import importlib.util

    import torch

    installed, cuda = importlib.util.find_spec("tensorrt") is not None, torch.cuda.is_available()
    if not (installed and cuda):
        raise UserError(
            f"--format tensorrt needs the `tensorrt` package and a CUDA GPU (tensorrt installed: {installed}, "
            f"CUDA GPU: {cuda}); export --format onnx and run it with onnxruntime instead"
        )


def export_tensorrt(model, record: dict, path: Path, opset: int = 17) -> None:
    """A TensorRT engine (fp16 where supported) built from the ONNX export, dynamic batch 1–16."""
    import tensorrt as trt

    onnx_path = path.with_suffix(".onnx")
    export_onnx(model, record, onnx_path, opset)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelLoadError(onnx_path, f"TensorRT cannot parse the ONNX export: {errors}")
    config = builder.create_builder_config()
    if builder.platform_has_fast_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    size = record["size"]
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, size, size), (1, 3, size, size), (16, 3, size, size))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ModelLoadError(onnx_path, "TensorRT failed to build an engine (see its log above)")
    write_atomic(path, bytes(engine))
