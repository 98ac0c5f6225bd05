"""Exporting the student: safetensors round trip, ONNX parity with onnxruntime, TorchScript, TensorRT message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from distill_fixtures import write_checkpoint  # noqa: E402

from distill.export import export, load_student  # noqa: E402
from factory.errors import ModelLoadError, UserError  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), ngf=8, depth=3, size=64)


def test_onnx_matches_pytorch_on_random_inputs_of_any_batch_and_size(checkpoint, tmp_path):
    import onnxruntime as ort

    path = export(checkpoint, "onnx", tmp_path)
    model, record = load_student(checkpoint)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["student"])
    assert meta == record
    rng = np.random.default_rng(1)
    for shape in [(1, 3, 64, 64), (3, 3, 48, 80)]:  # dynamic batch, height and width
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        ours = session.run(None, {"input": x})[0]
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        assert ours.shape == shape
        assert np.abs(ours - theirs).max() <= 1e-3


def test_safetensors_and_torchscript_reproduce_the_student(checkpoint, tmp_path):
    weights = export(checkpoint, "safetensors", tmp_path)
    scripted = export(checkpoint, "torchscript", tmp_path)
    model, _ = load_student(checkpoint)
    again, _ = load_student(weights)  # a .safetensors file with student.json beside it
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
        assert torch.allclose(model(x), torch.jit.load(str(scripted))(x), atol=1e-5)


def test_tensorrt_without_tensorrt_or_gpu_says_so(checkpoint, tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present: the engine would be built")
    with pytest.raises(UserError, match="needs the `tensorrt` package and a CUDA GPU"):
        export(checkpoint, "tensorrt", tmp_path / "trt")
    assert not (tmp_path / "trt").exists()


def test_a_missing_or_mismatched_checkpoint_is_a_model_load_error(checkpoint, tmp_path):
    with pytest.raises(ModelLoadError, match="no student weights"):
        load_student(tmp_path)
    other = write_checkpoint(tmp_path / "other", ngf=16, depth=3)
    (other / "student.json").write_text((checkpoint / "student.json").read_text())
    with pytest.raises(ModelLoadError, match="do not match the `student` section") as info:
        load_student(other)
    assert "\n" not in str(info.value) and "more)" in str(info.value)  # one line, not 18 of shapes


@pytest.mark.parametrize("edit, field", [({"size": 0}, "`size`"), ({"size": "abc"}, "`size`"), ({"size": None}, "`size`"),
                                         ({"size": 60}, "`size`"), ({"student": 5}, "`student`"),
                                         ({"student": {"ngf": -1, "depth": 3}}, "`student.ngf`"),
                                         ({"student": {"ngf": 8, "depth": 300}}, "`student.depth`")])
def test_a_student_json_with_a_bad_field_is_a_model_load_error_naming_it(checkpoint, tmp_path, edit, field):
    """These came out as a ValidationError, KeyError, TypeError or ZeroDivisionError traceback from export and infer."""
    from distill.config import InferConfig
    from distill.infer import infer
    from factory.images import encode_png

    folder = write_checkpoint(tmp_path / "ckpt", ngf=8, depth=3, size=64)
    record = {**json.loads((checkpoint / "student.json").read_text()), **edit}
    (folder / "student.json").write_text(json.dumps(record))
    (tmp_path / "a.png").write_bytes(encode_png(np.zeros((64, 64, 3), np.uint8)))
    with pytest.raises(ModelLoadError, match=f"student.json: cannot load model: field {field}"):
        export(folder, "onnx", tmp_path / "onnx")
    with pytest.raises(ModelLoadError, match=f"student.json: cannot load model: field {field}"):
        infer(folder, [tmp_path / "a.png"], tmp_path / "out", InferConfig.of(mode="face"))
    assert not (tmp_path / "onnx").exists() and not (tmp_path / "out").exists()


def test_a_student_saved_before_upsample_existed_loads_with_transposed_convolutions(tmp_path):
    folder = write_checkpoint(tmp_path / "old", upsample="transpose")
    record = json.loads((folder / "student.json").read_text())
    del record["student"]["upsample"]  # as every student.json written before the option
    (folder / "student.json").write_text(json.dumps(record))
    model, _ = load_student(folder)
    assert any(isinstance(m, torch.nn.ConvTranspose2d) for m in model.modules())


def test_an_export_folder_of_another_student_is_refused_unless_replaced(checkpoint, tmp_path):
    """A second student's export once replaced student.json beside the first's weights, which then loaded no more."""
    other = write_checkpoint(tmp_path / "other", ngf=4, depth=3, seed=5)
    out = tmp_path / "export"
    export(checkpoint, "safetensors", out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(UserError, match=r"holds the export of another student .* --overwrite"):
        export(other, "onnx", out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_student(out / "student.safetensors")
    assert export(checkpoint, "onnx", out).is_file()  # the same student: its other formats join it
    export(other, "onnx", out, replace=True)  # replaced whole: the first student's weights go with it
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["student.json", "student.onnx"]


def test_export_of_a_weights_file_goes_to_an_export_folder_beside_its_folder(tmp_path):
    """Given student.safetensors itself, the default --out was FILE/export, refused as "not a folder", naming an
    option the user never gave."""
    from typer.testing import CliRunner

    from toonfactory.cli import app

    folder = write_checkpoint(tmp_path / "ckpt", ngf=4, depth=2, size=32)
    result = CliRunner().invoke(app, ["export", str(folder / "student.safetensors"), "--format", "safetensors"])
    assert result.exit_code == 0, result.output
    model, _ = load_student(folder / "export" / "student.safetensors")
    reference, _ = load_student(folder)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values()))
