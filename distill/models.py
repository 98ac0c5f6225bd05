"""The student (pix2pix U-Net generator) and its PatchGAN discriminator.

Both take float NCHW tensors in [-1, 1]. The generator's input sides must be multiples of
``2 ** depth``; :func:`pad_to_multiple` handles arbitrary frames at inference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from distill.config import DiscriminatorConfig, StudentConfig


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class UNetGenerator(nn.Module):
    """pix2pix U-Net: 4×4 stride-2 convolutions down, transposed (or resize) convolutions up, skips between."""

    def __init__(self, config: StudentConfig, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.config = config
        self.multiple = 2**config.depth
        widths = [min(config.ngf * 2**level, config.max_channels) for level in range(config.depth)]
        bias = config.norm != "batch"
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            innermost = level == config.depth - 1
            layers = [] if level == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(in_channels if level == 0 else widths[level - 1], width, 4, 2, 1, bias=bias))
            if 0 < level and not innermost:
                layers.append(_norm(config.norm, width))
            self.down.append(nn.Sequential(*layers))
        self.up = nn.ModuleList()

        def upsample(width_in: int, width_out: int, bias: bool = True) -> list[nn.Module]:
            if config.upsample == "resize":
                return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width_in, width_out, 3, 1, 1, bias=bias)]
            return [nn.ConvTranspose2d(width_in, width_out, 4, 2, 1, bias=bias)]

        for level in reversed(range(config.depth)):
            innermost = level == config.depth - 1
            width_in = widths[level] * (1 if innermost else 2)
            if level == 0:
                layers = [nn.ReLU(), *upsample(width_in, out_channels), nn.Tanh()]
            else:
                layers = [nn.ReLU(), *upsample(width_in, widths[level - 1], bias)]
                layers.append(_norm(config.norm, widths[level - 1]))
                if config.dropout and level >= config.depth - 3:
                    layers.append(nn.Dropout(config.dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x, skips = image, []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return (image + x).clamp(-1.0, 1.0) if self.config.residual else x


class PatchDiscriminator(nn.Module):
    """PatchGAN on the channel-stacked (input, output) pair; returns the logits map and features."""

    def __init__(self, config: DiscriminatorConfig, in_channels: int = 6):
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_channels, config.ndf, 4, 2, 1), nn.LeakyReLU(0.2))]
        width = config.ndf
        for layer in range(1, config.layers + 1):
            stride = 2 if layer < config.layers else 1
            next_width = config.ndf * min(2**layer, 8)
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(width, next_width, 4, stride, 1, bias=False),
                    nn.InstanceNorm2d(next_width, affine=True),
                    nn.LeakyReLU(0.2),
                )
            )
            width = next_width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(width, 1, 4, 1, 1)

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = torch.cat([source, target], dim=1)
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return self.head(x), features


# Nearest ×2 upsampling then a 3×3 convolution, along one axis: an even output row reads input rows
# (i-1, i) with the taps (w0, w1 + w2), an odd one rows (i, i+1) with (w0 + w1, w2). Those are the taps
# 3, 1 and 2, 0 of a 4×4 stride-2 transposed convolution (output row 2i - 1 + tap reads input row i).
_RESIZE_TAPS = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def resize_conv_as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The 4×4, stride-2, padding-1 transposed convolution equal to nearest ×2 upsampling then ``conv``
    (3×3, stride 1, zero padding 1), to float rounding: 16 multiply-adds per input pixel and channel
    pair instead of 36, and no upsampled copy of the input."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.padding_mode != "zeros":
        raise ValueError("only a 3×3, stride 1, zero-padding 1 convolution folds into a transposed one")
    weight = conv.weight.detach()  # (out, in, 3, 3)
    folded = nn.ConvTranspose2d(weight.shape[1], weight.shape[0], 4, 2, 1, bias=conv.bias is not None)
    taps = _RESIZE_TAPS.to(weight)
    folded.weight.data = torch.einsum("rd,ce,oide->iorc", taps, taps, weight).contiguous()
    if conv.bias is not None:
        folded.bias.data = conv.bias.detach().clone()
    return folded.train(conv.training)


def for_inference(generator: UNetGenerator) -> UNetGenerator:
    """An inference copy of ``generator``: each nearest-upsample + 3×3 convolution computed as one transposed
    convolution (:func:`resize_conv_as_transposed`), and each BatchNorm folded into the convolution before it.

    Same outputs in eval mode (to float rounding); a resize-decoder student runs about 1.7-2× faster on a CPU.
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(generator).eval()
    for block in [*fused.down, *fused.up]:
        for i, (layer, following) in enumerate(zip(list(block), list(block)[1:])):
            if isinstance(layer, nn.Upsample) and isinstance(following, nn.Conv2d):
                block[i], block[i + 1] = nn.Identity(), resize_conv_as_transposed(following)
        for i, (layer, following) in enumerate(zip(list(block), list(block)[1:])):
            if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(following, nn.BatchNorm2d):
                block[i] = fuse_conv_bn_eval(layer, following, transpose=isinstance(layer, nn.ConvTranspose2d))
                block[i + 1] = nn.Identity()
    return fused


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad NCHW ``x`` on the bottom/right to multiples of ``multiple``; returns the original H, W."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)
