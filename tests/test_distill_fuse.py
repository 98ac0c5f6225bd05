"""The student's inference form: upsampling convolutions as transposed ones, BatchNorm folded; same outputs as the
eval-mode student (PyTorch, ONNX, TorchScript)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.config import StudentConfig
from distill.export import export_onnx
from distill.models import UNetGenerator, for_inference, resize_conv_as_transposed


def trained_student(upsample: str = "transpose") -> UNetGenerator:
    """A small student whose BatchNorm statistics and affine parameters are far from their initial values."""
    torch.manual_seed(0)
    model = UNetGenerator(StudentConfig(ngf=8, depth=4, upsample=upsample))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


UPSAMPLING = pytest.mark.parametrize("upsample, onnx_op", [("transpose", "ConvTranspose"), ("resize", "ConvTranspose")])


@UPSAMPLING
def test_folded_student_matches_the_eval_student_without_batchnorm(upsample, onnx_op):
    model = trained_student(upsample)
    fused = for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is left as it was
    x = torch.rand(2, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(fused(x), model(x), atol=1e-5)


@UPSAMPLING
def test_onnx_export_has_no_batchnorm_nodes_and_matches_pytorch(upsample, onnx_op, tmp_path):
    import onnx

    model = trained_student(upsample)
    record = {"architecture": "pix2pix-unet", "student": model.config.model_dump(), "size": 64}
    worst = export_onnx(model, record, tmp_path / "student.onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "student.onnx")).graph.node}
    assert "BatchNormalization" not in ops and "Resize" not in ops and onnx_op in ops
    assert worst <= 1e-4


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("height, width", [(5, 7), (1, 1), (12, 20)])
def test_a_transposed_convolution_is_nearest_upsampling_then_the_3x3_convolution(bias, height, width):
    torch.manual_seed(1)
    conv = nn.Conv2d(6, 5, 3, 1, 1, bias=bias)
    x = torch.randn(2, 6, height, width)
    with torch.no_grad():
        expected = conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
        folded = resize_conv_as_transposed(conv)(x)
    assert folded.shape == expected.shape == (2, 5, 2 * height, 2 * width)
    assert torch.allclose(folded, expected, atol=1e-5)


def test_only_a_3x3_same_size_convolution_is_folded():
    with pytest.raises(ValueError, match="3×3"):
        resize_conv_as_transposed(nn.Conv2d(4, 4, 5, 1, 2))


def test_inference_form_of_a_resize_student_has_no_upsampling_and_traces_at_any_size():
    model = trained_student("resize")
    fast = for_inference(model)
    assert not any(isinstance(m, nn.Upsample) for m in fast.modules())
    traced = torch.jit.trace(fast, torch.zeros(1, 3, 64, 64))
    x = torch.rand(1, 3, 48, 112) * 2 - 1  # another size than the trace's
    with torch.no_grad():
        assert torch.allclose(traced(x), model(x), atol=1e-5)
