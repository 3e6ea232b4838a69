"""Which ONNX exporter writes a file: the torch.export-based one unless the export module declares the
TorchScript-based tracer (with its reason) or the caller overrides it; bad choices are clear errors."""

import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

from cvzoo.export.onnx import export_onnx, onnx_exporter_for, read_metadata  # noqa: E402
from cvzoo.export.runtime import OnnxRuntimeModel  # noqa: E402


class DoubleOp(torch.autograd.Function):
    """``2 x``, exported by a symbolic as ``Add(x, x)``: only the TorchScript-based exporter calls it."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def symbolic(g, x):
        return g.op("Add", x, x)


class WithSymbolic(nn.Module):
    onnx_exporter = "torchscript"  # DoubleOp's symbolic is honoured by the tracer only

    def forward(self, x):
        return DoubleOp.apply(x)


def _ops(path):
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 2)).eval()


def test_default_is_the_dynamo_exporter_with_named_dynamic_batch_and_metadata(small_net, tmp_path):
    # A batch-1 example (torch.export would make a size-1 axis a constant) and the parity check at batch 2.
    path = export_onnx(small_net, tmp_path / "m.onnx", torch.rand(1, 3, 16, 16), output_names=("logits",),
                       metadata={"cvzoo_task": "classify", "names": '["a", "b"]'})
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 18  # the tracer's default is 17
    batch = [d.dim_param for d in (model.graph.input[0].type.tensor_type.shape.dim[0],
                                   model.graph.output[0].type.tensor_type.shape.dim[0])]
    assert batch == ["batch", "batch"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert read_metadata(path) == {"cvzoo_task": "classify", "names": '["a", "b"]'}
    runtime = OnnxRuntimeModel(path)
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(runtime(x.numpy())[0]), small_net(x), atol=1e-5, rtol=1e-4)


def test_a_module_declaring_the_tracer_gets_it_and_an_explicit_choice_overrides_it(tmp_path):
    module = WithSymbolic().eval()
    assert onnx_exporter_for(module) == "torchscript"
    assert onnx_exporter_for(module, "dynamo") == "dynamo"
    example = torch.rand(2, 3)
    traced = export_onnx(module, tmp_path / "traced.onnx", example)
    assert _ops(traced) == {"Add"}  # the symbolic's node
    assert onnx.load(str(traced)).opset_import[0].version == 17
    # Asked for explicitly, the dynamo exporter captures forward instead (a Mul by 2), and agrees numerically.
    captured = export_onnx(module, tmp_path / "captured.onnx", example, exporter="dynamo")
    assert "Add" not in _ops(captured) and "Mul" in _ops(captured)


def test_the_exporters_declared_by_the_detection_export_modules():
    from cvzoo.models import create_model
    from cvzoo.models.detection.graph_nms import NmsDetector
    from cvzoo.models.detection.rcnn.faster_rcnn import RCNNExport

    assert onnx_exporter_for(NmsDetector(nn.Identity())) == "torchscript"
    assert RCNNExport.onnx_exporter == "torchscript"
    yolo = create_model("yolov8n", num_classes=2)
    assert onnx_exporter_for(yolo.export_module()) == "dynamo"


def test_bad_exporter_choices_are_clear_errors(small_net, tmp_path):
    x = torch.rand(1, 3, 8, 8)
    with pytest.raises(ValueError, match="unknown ONNX exporter 'jit'.*dynamo, torchscript"):
        export_onnx(small_net, tmp_path / "a.onnx", x, exporter="jit")
    declared = WithSymbolic()
    declared.onnx_exporter = "old"
    with pytest.raises(ValueError, match=r"'old' \(declared by WithSymbolic.onnx_exporter\)"):
        export_onnx(declared, tmp_path / "b.onnx", x)
    with pytest.raises(ValueError, match="opset 18 or later, got opset 17"):
        export_onnx(small_net, tmp_path / "c.onnx", x, opset=17)
    assert not any(tmp_path.iterdir())  # each failed before writing anything


def test_the_cli_flag_chooses_the_exporter(tmp_path):
    from cvzoo.cli.main import main
    from tests.export.conftest import untrained_checkpoint

    weights = untrained_checkpoint(tmp_path / "best.pt", "classify", "lenet_mnist", "fashion_mnist_sample",
                                   ["data.limit_train=8", "data.limit_val=8"])
    assert main(["export", str(weights), "--onnx-exporter", "torchscript"]) == 0
    assert onnx.load(str(tmp_path / "best.onnx")).opset_import[0].version == 17
    assert read_metadata(tmp_path / "best.onnx")["cvzoo_task"] == "classify"


def test_torch_without_the_dynamo_exporter_defaults_to_the_tracer(small_net, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.4.1")
    assert onnx_exporter_for(small_net) == "torchscript"
    with pytest.raises(ValueError, match="needs torch >= 2.14, this is torch 2.4.1"):
        onnx_exporter_for(small_net, "dynamo")
