"""A StyleGAN2 generator in plain PyTorch whose state-dict keys match rosinality's stylegan2-pytorch.

Checkpoints from that ecosystem (FFHQ, Toonify, JoJoGAN, most toon fine-tunes) load as they are:
``{"g_ema": state_dict, "args": Namespace, ...}`` through ``torch.load(weights_only=True)``, or a
``.safetensors`` file of the same tensors (optionally prefixed ``g_ema.``). The architecture
(resolution, channels per resolution, mapping depth, style size) is read from the tensors.
"""

from __future__ import annotations

import argparse
import math
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from factory.errors import ModelLoadError

BLUR_KERNEL = (1, 3, 3, 1)
EXPECTED = "a rosinality stylegan2-pytorch checkpoint (.pt with a `g_ema` state dict, or .safetensors of it)"


def rosinality_channels(size: int, channel_multiplier: int = 2, max_channels: int = 512) -> dict[int, int]:
    """Channels per resolution as in stylegan2-pytorch; ``max_channels`` caps them (tiny test models)."""
    channels = {}
    for log_res in range(2, int(math.log2(size)) + 1):
        res = 2**log_res
        channels[res] = min(max_channels, 512 if res <= 32 else 16384 // res * channel_multiplier)
    return channels


def make_kernel(values) -> torch.Tensor:
    kernel = torch.tensor(values, dtype=torch.float32)
    kernel = kernel[None, :] * kernel[:, None]
    return kernel / kernel.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, then FIR-filter each channel (the plain-ops upfirdn2d)."""
    batch, channels, height, width = x.shape
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1)).to(x.dtype)[None, None].expand(channels, 1, *kernel.shape)
    return F.conv2d(x, weight, groups=channels)


class Blur(nn.Module):
    def __init__(self, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * upsample_factor**2)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", make_kernel(BLUR_KERNEL) * factor**2)
        p = len(BLUR_KERNEL) - factor
        self.pad, self.factor = ((p + 1) // 2 + factor - 1, p // 2), factor

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate; optional fused leaky ReLU (bias inside)."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x):
        if self.activate:
            return F.leaky_relu(F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul, 0.2) * math.sqrt(2)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * kernel * kernel)
        self.in_ch, self.out_ch, self.kernel = in_ch, out_ch, kernel
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            p = (len(BLUR_KERNEL) - 2) - (kernel - 1)
            self.blur = Blur(((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)

    def forward(self, x, style):
        batch, _, height, width = x.shape
        style = self.modulation(style).view(batch, 1, self.in_ch, 1, 1)
        weight = self.scale * self.weight * style
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8).view(batch, self.out_ch, 1, 1, 1)
        x = x.reshape(1, batch * self.in_ch, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * self.in_ch, self.out_ch, self.kernel, self.kernel)
            out = F.conv_transpose2d(x, weight, stride=2, groups=batch)
            return self.blur(out.reshape(batch, self.out_ch, *out.shape[2:]))
        weight = weight.reshape(batch * self.out_ch, self.in_ch, self.kernel, self.kernel)
        out = F.conv2d(x, weight, padding=self.kernel // 2, groups=batch)
        return out.reshape(batch, self.out_ch, *out.shape[2:])


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise):
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return F.leaky_relu(x + self.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int):
        return self.input.repeat(batch, 1, 1, 1)


class Generator(nn.Module):
    """StyleGAN2 generator: mapping z → w, synthesis w+ (``n_latent`` styles) → image in [-1, 1]."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channels: dict[int, int] | None = None,
                 lr_mlp: float = 0.01):
        super().__init__()
        channels = channels or rosinality_channels(size)
        self.size, self.style_dim, self.channels = size, style_dim, channels
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activate=True)
                                                  for _ in range(n_mlp)])
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.convs, self.to_rgbs, self.noises = nn.ModuleList(), nn.ModuleList(), nn.Module()
        for layer in range(self.num_layers):
            res = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise_{layer}", torch.randn(1, 1, res, res))
        in_ch = channels[4]
        for log_res in range(3, self.log_size + 1):
            out_ch = channels[2**log_res]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        return [tuple(getattr(self.noises, f"noise_{i}").shape) for i in range(self.num_layers)]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def synthesis(self, w: torch.Tensor, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Image from ``w`` (N×style_dim, or N×n_latent×style_dim); ``noise`` defaults to the stored buffers."""
        if w.ndim == 2:
            w = w[:, None].expand(-1, self.n_latent, -1)
        if noise is None:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        out = self.conv1(self.input(w.shape[0]), w[:, 0], noise[0])
        skip = self.to_rgb1(out, w[:, 1])
        i = 1
        for conv_up, conv, noise_up, noise_same, to_rgb in zip(
                self.convs[::2], self.convs[1::2], noise[1::2], noise[2::2], self.to_rgbs):
            out = conv_up(out, w[:, i], noise_up)
            out = conv(out, w[:, i + 1], noise_same)
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of w over ``n`` z draws from a fixed seed (1×style_dim): the truncation centre."""
        device = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed)).to(device)
        return self.mapping(z).mean(0, keepdim=True)


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale, self.stride, self.padding = 1 / math.sqrt(in_ch * kernel * kernel), stride, padding

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    """[blur] → conv (stride 2 when downsampling) → [fused leaky ReLU]: indices as in stylegan2-pytorch."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, downsample: bool = False, bias: bool = True,
                 activate: bool = True):
        layers = []
        if downsample:
            p = (len(BLUR_KERNEL) - 2) + (kernel - 1)
            layers.append(Blur(((p + 1) // 2, p // 2)))
        layers.append(EqualConv2d(in_ch, out_ch, kernel, stride=2 if downsample else 1,
                                  padding=0 if downsample else kernel // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with stylegan2-pytorch's keys (a checkpoint's ``d``).

    ``convs[0]`` reads RGB at full resolution and each later block halves it: low indices are the
    layers nearest the image.
    """

    def __init__(self, size: int, channels: dict[int, int] | None = None):
        super().__init__()
        channels = channels or rosinality_channels(size)
        self.size, self.channels = size, channels
        blocks = [ConvLayer(3, channels[size], 1)]
        for log_res in range(int(math.log2(size)), 2, -1):
            blocks.append(ResBlock(channels[2**log_res], channels[2 ** (log_res - 1)]))
        self.convs = nn.Sequential(*blocks)
        self.stddev_group = 4
        self.final_conv = ConvLayer(channels[4] + 1, channels[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(channels[4] * 16, channels[4], activate=True),
                                          EqualLinear(channels[4], 1))

    def forward(self, x):
        out = self.convs(x)
        batch, channels, height, width = out.shape
        group = math.gcd(batch, self.stddev_group)  # stylegan2-pytorch needs batch % 4 == 0 otherwise
        stddev = out.view(group, -1, 1, channels, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, stddev.repeat(group, 1, height, width)], 1)
        return self.final_linear(self.final_conv(out).view(batch, -1))


def discriminator_architecture(state: dict[str, torch.Tensor]) -> dict:
    """Discriminator arguments read from a state dict's tensor shapes."""
    blocks = len({k.split(".")[1] for k in state if k.startswith("convs.")})
    size = 2 ** (blocks + 1)
    channels = {size: state["convs.0.0.weight"].shape[0]}
    for i in range(1, blocks):
        channels[size >> i] = state[f"convs.{i}.conv2.1.weight"].shape[0]
    return {"size": size, "channels": channels}


def layer_resolution(key: str) -> int | None:
    """The output resolution a synthesis tensor works at (None for the mapping network)."""
    parts = key.split(".")
    if parts[0] in ("input", "conv1", "to_rgb1"):
        return 4
    if parts[0] == "convs":
        return 2 ** (int(parts[1]) // 2 + 3)
    if parts[0] == "to_rgbs":
        return 2 ** (int(parts[1]) + 3)
    if parts[0] == "noises":
        return 2 ** ((int(parts[1].removeprefix("noise_")) + 5) // 2)
    return None


def architecture(state: dict[str, torch.Tensor]) -> dict:
    """Generator arguments read from a state dict's tensor shapes."""
    n_mlp = len({k.split(".")[1] for k in state if k.startswith("style.") and k.endswith(".weight")})
    n_rgbs = len({k.split(".")[1] for k in state if k.startswith("to_rgbs.")})
    channels = {4: state["input.input"].shape[1]}
    for i in range(n_rgbs):
        channels[2 ** (i + 3)] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    return {"size": 2 ** (n_rgbs + 2), "style_dim": state["style.1.weight"].shape[1], "n_mlp": n_mlp,
            "channels": channels}


def read_checkpoint(path: Path) -> dict:
    """The top-level mapping of a rosinality .pt/.pth or a .safetensors file; never executes code."""
    from factory.models.tensors import read_safetensors

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(path, f"file not found; expected {EXPECTED}")
    if path.suffix == ".safetensors":
        return read_safetensors(path, EXPECTED)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad/unsafe pickles
        raise ModelLoadError(path, f"not a loadable weights-only torch file ({type(exc).__name__}); expected "
                                   f"{EXPECTED}") from None
    if not isinstance(checkpoint, dict):
        raise ModelLoadError(path, f"holds a {type(checkpoint).__name__}; expected {EXPECTED}")
    return checkpoint


def _part(checkpoint: dict, name: str) -> dict[str, torch.Tensor] | None:
    """One network's tensors: ``checkpoint[name]``, or the keys prefixed ``name.`` (safetensors)."""
    if isinstance(checkpoint.get(name), dict):
        return {k: v for k, v in checkpoint[name].items() if isinstance(v, torch.Tensor)}
    prefix = name + "."
    found = {k.removeprefix(prefix): v for k, v in checkpoint.items() if k.startswith(prefix)}
    return found or None


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The g_ema state dict of a rosinality .pt/.pth or a .safetensors file; never executes code."""
    checkpoint = read_checkpoint(path)
    state = _part(checkpoint, "g_ema")
    if state is None:
        state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if "input.input" not in state or "style.1.weight" not in state:
        raise ModelLoadError(path, f"no `input.input`/`style.1.weight` tensors; expected {EXPECTED}")
    return state


def read_discriminator_state(path: Path) -> dict[str, torch.Tensor] | None:
    """The discriminator (``d``) a training checkpoint holds, or None (g_ema-only files)."""
    return _part(read_checkpoint(path), "d")


def load_generator(path: Path, state: dict[str, torch.Tensor] | None = None) -> Generator:
    """A generator built to the checkpoint's shapes with its weights, in eval mode on the CPU."""
    from factory.models.tensors import load_matching

    state = read_state(path) if state is None else state
    try:
        generator = Generator(**architecture(state))
    except (KeyError, IndexError, ValueError) as exc:
        raise ModelLoadError(path, f"cannot read the architecture ({exc}); expected {EXPECTED}") from None
    load_matching(generator, state, Path(path), EXPECTED)
    return generator.eval().requires_grad_(False)


@lru_cache(maxsize=None)
def shared_generator(path: str, device: str = "cpu") -> tuple[Generator, dict[str, torch.Tensor]]:
    """One generator per checkpoint, device and process, with its state dict: the StyleGAN2 source
    and the Toonify teacher's base share it instead of loading the checkpoint twice."""
    state = read_state(Path(path))
    return load_generator(Path(path), state).to(device), state


@lru_cache(maxsize=None)
def shared_mean_w(path: str, device: str, samples: int) -> torch.Tensor:
    """The truncation centre of :func:`shared_generator`'s generator, computed once per process."""
    with torch.inference_mode():
        return shared_generator(path, device)[0].mean_latent(samples)


def sample_z(seed: int, style_dim: int) -> torch.Tensor:
    """The z of one sample (1×style_dim), from its seed alone: the same in any process."""
    return torch.randn(1, style_dim, generator=torch.Generator().manual_seed(seed))


def sample_noise(generator: Generator, seed: int, mode: str) -> list[torch.Tensor]:
    """Per-layer noise (batch 1): drawn from ``seed`` (``sample``), the checkpoint's, or zeros."""
    shapes = generator.noise_shapes()
    if mode == "checkpoint":
        return [getattr(generator.noises, f"noise_{i}") for i in range(len(shapes))]
    if mode == "zero":
        return [torch.zeros(shape) for shape in shapes]
    rng = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=rng) for shape in shapes]


def latent_w(generator: Generator, latent_seed: int, mean_w: torch.Tensor, truncation: float) -> torch.Tensor:
    """The truncated W (1×style_dim) of one sample: mapping of its z, pulled towards the mean W."""
    w = generator.mapping(sample_z(latent_seed, generator.style_dim).to(mean_w.device))
    return mean_w + truncation * (w - mean_w)
