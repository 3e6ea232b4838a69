"""The onnxruntime backend never runs an ONNX file older than, or not made from, the checkpoint it is given."""

import logging
import shutil

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from cvzoo import api  # noqa: E402
from cvzoo.cli.main import main  # noqa: E402
from cvzoo.engine.checkpoint import load_checkpoint  # noqa: E402
from cvzoo.export.provenance import CHECKPOINT_SHA256, file_sha256  # noqa: E402
from cvzoo.export.runtime import OnnxTorchModel  # noqa: E402

# The subject is which file predict runs, told by the checkpoint hash both ONNX exporters record alike: the
# tests' own exports take the tracer (about 1 s less each than the torch.export-based default on this LeNet,
# docs/deploy.md); the exports predict makes by itself take the default.
EXPLICIT_EXPORTER = "torchscript"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch LeNet on the bundled sample, and a few of its images."""
    root = tmp_path_factory.mktemp("stale")
    assert main([
        "train", "--model", "lenet_mnist", "--data", "fashion_mnist_sample", "--epochs", "1", "--batch", "32",
        "--project", str(root), "--name", "run", "--device", "cpu",
        "--set", "run.progress=false", "run.plots=false", "run.tensorboard=false", "data.limit_train=64",
        "data.limit_val=32",
    ]) == 0
    from cvzoo.data.bundled import export_sample_to_folder

    folder = export_sample_to_folder(root / "images", splits=("val",))
    return root / "classify" / "run" / "weights" / "last.pt", sorted((folder / "val").glob("*/*.png"))[::40]


@pytest.fixture
def weights(trained, tmp_path):
    """A private copy of the checkpoint (the tests overwrite it), with no ONNX file next to it."""
    copy = tmp_path / "best.pt"
    shutil.copy(trained[0], copy)
    return copy


def _retrain(path):
    """Save different weights at the same path, as a second training run writing best.pt would."""
    checkpoint = load_checkpoint(path)
    generator = torch.Generator().manual_seed(7)
    for state in (checkpoint["model"], *([checkpoint["ema"]["module"]] if checkpoint.get("ema") else [])):
        for name, tensor in state.items():
            if tensor.is_floating_point() and "running" not in name:  # BatchNorm statistics stay valid
                tensor.add_(0.1 * torch.randn(tensor.shape, generator=generator))
    torch.save(checkpoint, path)


def _probs(results):
    return np.array([[t["prob"] for t in r["topk"]] for r in results]), [[t["index"] for t in r["topk"]] for r in results]


def _assert_same(a, b):
    (pa, ia), (pb, ib) = _probs(a), _probs(b)
    assert ia == ib
    np.testing.assert_allclose(pa, pb, atol=1e-5)


def test_export_records_the_checkpoint_sha256(weights):
    (path,) = api.export(weights, format="onnx", onnx_exporter=EXPLICIT_EXPORTER)
    assert OnnxTorchModel(path).metadata[CHECKPOINT_SHA256] == file_sha256(weights)


def test_a_retrained_checkpoint_is_exported_again_before_predicting(weights, trained, caplog):
    images = trained[1]
    api.export(weights, format="onnx", onnx_exporter=EXPLICIT_EXPORTER)
    old = api.predict(weights, images, device="cpu", topk=3, backend="onnxruntime")
    _retrain(weights)
    with caplog.at_level(logging.WARNING, logger="cvzoo.api"):
        fresh = api.predict(weights, images, device="cpu", topk=3, backend="onnxruntime")
    assert "was exported from another checkpoint" in caplog.text and "exporting" in caplog.text
    assert OnnxTorchModel(weights.with_suffix(".onnx")).metadata[CHECKPOINT_SHA256] == file_sha256(weights)
    _assert_same(fresh, api.predict(weights, images, device="cpu", topk=3))  # the new weights' outputs
    assert not np.allclose(_probs(old)[0], _probs(fresh)[0], atol=1e-3)


def test_a_missing_default_file_is_exported(weights, trained, caplog):
    with caplog.at_level(logging.WARNING, logger="cvzoo.api"):
        results = api.predict(weights, trained[1], device="cpu", topk=3, backend="onnxruntime")
    assert "does not exist" in caplog.text
    _assert_same(results, api.predict(weights, trained[1], device="cpu", topk=3))


def test_an_unchanged_checkpoint_reuses_its_file(weights, trained, caplog):
    (path,) = api.export(weights, format="onnx", onnx_exporter=EXPLICIT_EXPORTER)
    written = path.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="cvzoo.api"):
        api.predict(weights, trained[1], device="cpu", topk=3, backend="onnxruntime")
    # No warning (torch.export's structured-trace logger leaves DEBUG records of the export above in caplog).
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING] and path.stat().st_mtime_ns == written


def test_a_given_onnx_file_from_another_checkpoint_is_an_error(weights, trained, tmp_path, capsys):
    (other,) = api.export(weights, format="onnx", onnx_exporter=EXPLICIT_EXPORTER, out=tmp_path / "other")
    _retrain(weights)
    with pytest.raises(ValueError, match="was exported from another checkpoint"):
        api.predict(weights, trained[1], device="cpu", backend="onnxruntime", onnx=other)
    assert main(["predict", str(weights), str(trained[1][0]), "--backend", "onnxruntime", "--onnx", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cvzoo predict: error: ") and "\n" not in err and "cvzoo export" in err


def test_an_onnx_file_without_a_recorded_checkpoint_is_not_used_silently(weights, trained, tmp_path, caplog):
    import onnx

    (path,) = api.export(weights, format="onnx", onnx_exporter=EXPLICIT_EXPORTER)
    graph = onnx.load(str(path))  # as an export from before the hash was recorded
    kept = [(p.key, p.value) for p in graph.metadata_props if p.key != CHECKPOINT_SHA256]
    del graph.metadata_props[:]
    for key, value in kept:
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    shutil.copy(path, tmp_path / "given.onnx")
    with pytest.raises(ValueError, match="records no source checkpoint"):
        api.predict(weights, trained[1], device="cpu", backend="onnxruntime", onnx=tmp_path / "given.onnx")
    with caplog.at_level(logging.WARNING, logger="cvzoo.api"):
        api.predict(weights, trained[1], device="cpu", backend="onnxruntime")
    assert "records no source checkpoint" in caplog.text
    assert OnnxTorchModel(path).metadata[CHECKPOINT_SHA256] == file_sha256(weights)


def test_nms_settings_of_a_stale_file_are_kept_on_export():
    from cvzoo.api import _nms_settings
    from cvzoo.models.detection.graph_nms import META_CONF, META_IOU, META_MAX_DET, META_NMS

    metadata = {META_NMS: "1", META_CONF: "0.3", META_IOU: "0.6", META_MAX_DET: "50", CHECKPOINT_SHA256: "x"}
    assert _nms_settings(metadata) == {"nms": True, "conf": 0.3, "iou": 0.6, "max_det": 50}
    assert _nms_settings({CHECKPOINT_SHA256: "x"}) == {}
