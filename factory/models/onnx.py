"""ONNX Runtime sessions from a user's file: one loader for embedders, realifiers and the student."""

from __future__ import annotations

from pathlib import Path

from factory.errors import ModelLoadError


def open_session(path: Path, expected: str, gpu: bool = False):
    """An onnxruntime session for ``path`` (CUDA first when ``gpu`` and available, else the CPU);
    a missing or unreadable file is a ModelLoadError saying what was ``expected``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(path, f"{expected}; file not found")
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"] if gpu else ["CPUExecutionProvider"]
    providers = [p for p in wanted if p in ort.get_available_providers()]
    try:
        return ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelLoadError(path, f"{expected} that onnxruntime can open ({str(exc)[:200]})") from None
