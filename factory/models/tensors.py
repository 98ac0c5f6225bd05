"""Shared by the neural teachers: device choice, image ↔ tensor conversion, weight-file reading.

Imported only by modules whose models are built (it imports torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from factory.errors import ModelLoadError


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else the CPU; ``cuda``/``cpu``/``cuda:1`` as given. A device that
    does not exist here is one line naming ``--device``."""
    from factory.errors import UserError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UserError(f"--device {name}: not a device ({exc}); use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise UserError(f"--device {name}: no such CUDA device here ({torch.cuda.device_count()} found); use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: use auto, cpu, cuda or cuda:N")
    return device


def images_to_tensor(images: list[np.ndarray], device: torch.device, dtype=torch.float32) -> torch.Tensor:
    """RGB uint8 H×W×3 images (same size) to a float NCHW batch in [-1, 1]."""
    batch = torch.from_numpy(np.stack(images)).to(device)
    return batch.permute(0, 3, 1, 2).to(dtype) / 127.5 - 1.0


def tensor_to_images(batch: torch.Tensor) -> list[np.ndarray]:
    """A float NCHW batch in [-1, 1] to RGB uint8 H×W×3 images (rounded, clipped)."""
    pixels = ((batch.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return [np.ascontiguousarray(img) for img in pixels.permute(0, 2, 3, 1).cpu().numpy()]


def read_safetensors(path: Path, expected: str) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file on the CPU; a bad file is a ModelLoadError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(path, f"file not found; expected {expected}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(path, f"not a readable safetensors file ({exc}); expected {expected}") from None


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, expected: str) -> None:
    """Load ``state`` into ``module`` requiring identical keys and shapes, or raise ModelLoadError."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{name}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise ModelLoadError(path, f"{expected}; {'; '.join(parts)}")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
