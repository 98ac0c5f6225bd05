"""CartoonGAN (Chen et al. 2018): a feed-forward photo → cartoon generator with pretrained weights.

Weights are a folder of ``<tensor name>.npy`` files (PyTorch layout, as converted from the original
release) or one ``.safetensors`` file holding the same tensors. The network works in BGR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from factory.sample import Sample
from factory.teachers.base import Teacher, TeacherConfig

EXPECTED = "CartoonGAN generator tensors (conv01_1 … deconv03_1, in01_1 … in13_1) as a .npy folder or .safetensors"


class CartoonGANConfig(TeacherConfig):
    """A pretrained CartoonGAN generator; photo → cartoon only."""

    kind: Literal["cartoongan"]
    direction: Literal["real2toon"] = Field("real2toon", description="CartoonGAN only stylizes photos")
    weights: Path = Field(description="folder of .npy tensors or a .safetensors file")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    half: bool = Field(False, description="fp16 on CUDA")

    def build(self) -> "CartoonGANTeacher":
        return CartoonGANTeacher(self)


def build_generator():
    """The CartoonGAN generator as a torch module whose state-dict keys are the weight file names."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class InstanceNorm(nn.Module):
        def __init__(self, channels: int):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(channels))
            self.shift = nn.Parameter(torch.zeros(channels))

        def forward(self, x):
            return F.instance_norm(x, weight=self.scale, bias=self.shift, eps=1e-9)

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv01_1, self.in01_1 = nn.Conv2d(3, 64, 7), InstanceNorm(64)
            self.conv02_1, self.conv02_2 = nn.Conv2d(64, 128, 3, 2, 1), nn.Conv2d(128, 128, 3, 1, 1)
            self.in02_1 = InstanceNorm(128)
            self.conv03_1, self.conv03_2 = nn.Conv2d(128, 256, 3, 2, 1), nn.Conv2d(256, 256, 3, 1, 1)
            self.in03_1 = InstanceNorm(256)
            self.blocks = [f"{i:02d}" for i in range(4, 12)]
            for b in self.blocks:
                setattr(self, f"conv{b}_1", nn.Conv2d(256, 256, 3))
                setattr(self, f"in{b}_1", InstanceNorm(256))
                setattr(self, f"conv{b}_2", nn.Conv2d(256, 256, 3))
                setattr(self, f"in{b}_2", InstanceNorm(256))
            self.deconv01_1 = nn.ConvTranspose2d(256, 128, 3, 2, 1, 1)
            self.deconv01_2, self.in12_1 = nn.Conv2d(128, 128, 3, 1, 1), InstanceNorm(128)
            self.deconv02_1 = nn.ConvTranspose2d(128, 64, 3, 2, 1, 1)
            self.deconv02_2, self.in13_1 = nn.Conv2d(64, 64, 3, 1, 1), InstanceNorm(64)
            self.deconv03_1 = nn.Conv2d(64, 3, 7)

        def forward(self, x):
            x = F.relu(self.in01_1(self.conv01_1(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
            x = F.relu(self.in02_1(self.conv02_2(self.conv02_1(x))))
            x = F.relu(self.in03_1(self.conv03_2(self.conv03_1(x))))
            for b in self.blocks:
                y = F.pad(x, (1, 1, 1, 1), mode="reflect")
                y = F.relu(getattr(self, f"in{b}_1")(getattr(self, f"conv{b}_1")(y)))
                y = F.pad(y, (1, 1, 1, 1), mode="reflect")
                x = x + getattr(self, f"in{b}_2")(getattr(self, f"conv{b}_2")(y))
            x = F.relu(self.in12_1(self.deconv01_2(self.deconv01_1(x))))
            x = F.relu(self.in13_1(self.deconv02_2(self.deconv02_1(x))))
            return torch.tanh(self.deconv03_1(F.pad(x, (3, 3, 3, 3), mode="reflect")))

    return Generator()


def read_weights(path: Path) -> dict:
    """The generator's tensors from a .npy folder or a .safetensors file."""
    import torch

    from factory.errors import ModelLoadError
    from factory.models.tensors import read_safetensors

    if path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise ModelLoadError(path, f"no .npy files in the folder; expected {EXPECTED}")
        state = {}
        for file in files:
            try:
                state[file.stem] = torch.from_numpy(np.load(file, allow_pickle=False).astype(np.float32))
            except (OSError, ValueError) as exc:
                raise ModelLoadError(file, f"not a readable .npy array ({exc}); expected {EXPECTED}") from None
        return state
    if path.suffix == ".safetensors":
        return read_safetensors(path, EXPECTED)
    raise ModelLoadError(path, f"not found or not a folder/.safetensors; expected {EXPECTED}")


def load_generator(path: Path):
    """A CartoonGAN generator with the weights at ``path``, in eval mode on the CPU."""
    from factory.models.tensors import load_matching

    generator = build_generator()
    load_matching(generator, read_weights(Path(path)), Path(path), EXPECTED)
    return generator.eval().requires_grad_(False)


class CartoonGANTeacher(Teacher):
    """real → toon with a pretrained CartoonGAN; images of any size (padded to a multiple of 4)."""

    def __init__(self, config: CartoonGANConfig):
        import torch

        from factory.models.tensors import pick_device

        super().__init__(config)
        self.device = pick_device(config.device)
        self.dtype = torch.float16 if config.half and self.device.type == "cuda" else torch.float32
        self.generator = load_generator(config.weights).to(self.device, self.dtype)

    def translate(self, images: list[np.ndarray], samples: list[Sample]) -> list[np.ndarray]:
        shapes = {image.shape for image in images}
        if len(shapes) > 1:  # the face stage crops to one size; mixed sizes go one by one
            return [out for image, s in zip(images, samples) for out in self.translate([image], [s])]
        return self.stylize(images)

    def stylize(self, images: list[np.ndarray]) -> list[np.ndarray]:
        import torch
        from torch.nn import functional as F

        from factory.models.tensors import images_to_tensor, tensor_to_images

        height, width = images[0].shape[:2]
        batch = images_to_tensor([im[..., ::-1] for im in images], self.device, self.dtype)  # RGB → BGR
        pad_h, pad_w = -height % 4, -width % 4
        if pad_h or pad_w:
            batch = F.pad(batch, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.inference_mode():
            out = self.generator(batch)[:, :, :height, :width]
        return [np.ascontiguousarray(im[..., ::-1]) for im in tensor_to_images(out)]  # BGR → RGB
