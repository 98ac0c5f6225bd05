"""BatchNorm folding for inference: same outputs as the eval-mode student, no BatchNorm left (PyTorch and ONNX)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distill.config import StudentConfig
from distill.export import export_onnx
from distill.models import UNetGenerator, fuse_batchnorm


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


UPSAMPLING = pytest.mark.parametrize("upsample, onnx_op", [("transpose", "ConvTranspose"), ("resize", "Resize")])


@UPSAMPLING
def test_folded_student_matches_the_eval_student_without_batchnorm(upsample, onnx_op):
    model = trained_student(upsample)
    fused = fuse_batchnorm(model)
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
    assert "BatchNormalization" not in ops and onnx_op in ops
    assert worst <= 1e-4
