"""Every export format (ONNX, ONNX int8, OpenVINO fp32/int8, TorchScript) loads in predict and val and gives
the torch model's metrics (float32) or close logits (int8), for classification, detection (with and
without NMS in the graph) and segmentation; the calibration and missing-package errors are clear."""

import importlib.util

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("nncf")

from cvzoo import api  # noqa: E402
from cvzoo.export.quantize import quantize_onnx  # noqa: E402
from cvzoo.export.runtime import load_runtime  # noqa: E402
from tests.export.conftest import untrained_checkpoint  # noqa: E402

ALL = "onnx,onnx-int8,openvino,openvino-int8,torchscript"
FLOAT = ("cls.onnx", "cls.xml", "cls.torchscript")
SMALL = ["data.limit_train=32", "data.limit_val=64"]


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("deploy_cls")
    weights = untrained_checkpoint(root / "best.pt", "classify", "lenet_mnist", "fashion_mnist_sample", SMALL)
    paths = api.export(weights, format=ALL, out=root / "cls", calib=8)
    from cvzoo.data.bundled import export_sample_to_folder

    images = sorted((export_sample_to_folder(root / "images", splits=("val",)) / "val").glob("*/*.png"))[::50]
    return weights, {p.name: p for p in paths}, images


def _top1(path, **kwargs):
    return api.evaluate(path, device="cpu", plots=False, **kwargs)


def test_classification_every_format_validates_and_predicts_like_torch(classifier):
    weights, paths, images = classifier
    assert sorted(paths) == sorted(["cls.onnx", "cls-int8.onnx", "cls.xml", "cls-int8.xml", "cls.torchscript"])
    assert paths["cls.xml"].with_suffix(".bin").is_file()
    reference = _top1(weights)
    expected = api.predict(weights, images, device="cpu", topk=2)
    for name in FLOAT:
        metrics = _top1(paths[name], threads=1)
        assert metrics["top1"] == reference["top1"] and metrics["top5"] == reference["top5"], name
        got = api.predict(paths[name], images, topk=2)
        assert [r["topk"][0]["index"] for r in got] == [r["topk"][0]["index"] for r in expected], name
        assert np.allclose([r["topk"][0]["prob"] for r in got], [r["topk"][0]["prob"] for r in expected], atol=1e-4)
    # int8: the same model within quantisation error (logits, on calibration-like inputs), and it validates.
    task = api.load_trained(weights)[0]
    x = torch.cat(task.calibration_images(8, "val"))
    fp32 = load_runtime(paths["cls.onnx"])(x)
    for name in ("cls-int8.onnx", "cls-int8.xml"):
        int8 = load_runtime(paths[name])
        assert int8.metadata["cvzoo_precision"] == "int8" and int8.metadata["cvzoo_task"] == "classify"
        got = int8(x)
        error, spread = float((got - fp32).abs().max()), float(fp32.max() - fp32.min())
        correlation = float(torch.corrcoef(torch.stack([got.flatten(), fp32.flatten()]))[0, 1])
        assert 0 < error < 0.2 * spread and correlation > 0.97, (name, error, spread, correlation)
        assert 0 <= _top1(paths[name])["top1"] <= 1
    assert paths["cls-int8.onnx"].stat().st_size < 0.5 * paths["cls.onnx"].stat().st_size


def test_backend_flag_runs_the_checkpoints_export_and_must_match_a_files_format(classifier, tmp_path):
    weights, paths, images = classifier
    copy = tmp_path / "best.pt"
    copy.write_bytes(weights.read_bytes())
    got = api.predict(copy, images[:2], device="cpu", backend="openvino")
    assert (tmp_path / "best.xml").is_file()  # exported next to the checkpoint on first use
    assert [r["topk"] for r in got] == [r["topk"] for r in api.predict(paths["cls.xml"], images[:2])]
    with pytest.raises(ValueError, match="runs with backend 'openvino', not 'onnxruntime'"):
        api.predict(paths["cls.xml"], images[:1], backend="onnxruntime")


def test_empty_or_wrong_channel_calibration_sets_are_clear_errors(classifier, tmp_path):
    weights, paths, _ = classifier
    with pytest.raises(ValueError, match="calibration set is empty"):
        # The tracer: the ONNX file is written before calibration fails, and the error, not the exporter, is
        # the subject here (the torch.export-based default costs ~1 s more, docs/deploy.md).
        api.export(weights, format="onnx-int8", out=tmp_path / "none", calib=0, onnx_exporter="torchscript")
    with pytest.raises(ValueError, match=r"calibration set \(mine\) is empty"):
        quantize_onnx(paths["cls.onnx"], tmp_path / "q.onnx", [], "mine")
    rgb = [torch.rand(1, 3, 28, 28)]  # LeNet on Fashion-MNIST takes one channel
    with pytest.raises(ValueError, match=r"calibration image 0 of rgb has shape \[1, 3, 28, 28\]; .*1-channel"):
        quantize_onnx(paths["cls.onnx"], tmp_path / "q.onnx", rgb, "rgb")
    from cvzoo.export.openvino import export_openvino

    with pytest.raises(ValueError, match="1-channel"):
        export_openvino(paths["cls.onnx"], tmp_path / "q.xml", rgb, "rgb")


def test_a_missing_package_names_what_to_install(classifier, tmp_path, monkeypatch):
    weights, paths, _ = classifier
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("nncf", "openvino") else real(name, *a))
    with pytest.raises(ImportError, match=r"needs openvino, nncf.*pip install 'cvzoo\[openvino\]'"):
        api.export(weights, format="openvino-int8", out=tmp_path / "m", calib=2, onnx_exporter="torchscript")
    assert not list(tmp_path.glob("m*")), "the missing package must be found before any file is written"
    with pytest.raises(ImportError, match=r"needs openvino.*pip install 'cvzoo\[openvino\]'"):
        api.predict(paths["cls.xml"], [], device="cpu")


def test_detection_exports_with_and_without_nms_validate(tmp_path):
    from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset

    scenes = SceneConfig(image_size=(64, 64), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])
    data = write_yolo_dataset(tmp_path / "yolo", n_train=4, n_val=4, config=scenes, seed=1)
    weights = untrained_checkpoint(tmp_path / "det.pt", "detect", "yolov8n", str(data), ["data.img_size=64"])
    reference = _top1(weights)
    # The ONNX graph is checked against PyTorch at export; the IR made from it must give the same outputs.
    onnx_path, xml_path = api.export(weights, format="onnx,openvino", out=tmp_path / "det")
    x = torch.rand(2, 3, 64, 64)
    assert float((load_runtime(xml_path)(x) - load_runtime(onnx_path)(x)).abs().max()) < 1e-3
    # A new YOLO's scores are ~1e-4, below any NMS threshold but validation's 0.001: the NMS graph must
    # be exported at validation's threshold to be validated (see docs/deploy.md).
    nms_paths = api.export(weights, format="onnx", out=tmp_path / "nms", nms=True, conf=0.001, check=False)
    for path in (onnx_path, xml_path, *nms_paths):
        metrics = _top1(path)
        assert {"mAP50", "mAP50-95", "precision", "recall", "table"} <= set(metrics), path.name
        for key in ("mAP50", "mAP50-95", "precision", "recall"):
            assert metrics[key] == pytest.approx(reference[key], abs=1e-3), (path.name, key)
        assert len(api.predict(path, data.parent / "images" / "val", conf=0.001)) == 4


def test_segmentation_exports_validate_like_torch(voc_scenes, tmp_path):
    weights = untrained_checkpoint(tmp_path / "seg.pt", "segment", "unet", str(voc_scenes),
                                   ["data.img_size=64", "model.kwargs={base_channels: 4}", "data.limit_val=8"])
    reference = _top1(weights)
    for path in api.export(weights, format="onnx,openvino", out=tmp_path / "seg"):
        metrics = _top1(path)
        assert metrics["mIoU"] == pytest.approx(reference["mIoU"], abs=1e-3), path.name
        assert metrics["pixel_acc"] == pytest.approx(reference["pixel_acc"], abs=1e-3), path.name


def test_openvino_compiles_a_dynamic_batch_ir_once_per_shape_with_the_same_outputs(classifier):
    # cvzoo's IRs keep the batch axis dynamic; OpenVINO's dynamic-shape kernels are several times slower
    # than a compile at a fixed shape, so the runtime compiles each input shape it meets, fixed.
    weights, paths, _ = classifier
    model = load_runtime(paths["cls.xml"], threads=1)
    assert model.dynamic and model.requests == {}
    onnx = load_runtime(paths["cls.onnx"], threads=1)
    x = torch.from_numpy(np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32))
    for batch in (1, 3, 1):
        torch.testing.assert_close(model(x[:batch]), onnx(x[:batch]), rtol=1e-4, atol=1e-4)
    assert sorted(model.requests) == [(1, 1, 28, 28), (3, 1, 28, 28)]
    for request in model.requests.values():
        assert not request.model_inputs[0].get_partial_shape().is_dynamic
