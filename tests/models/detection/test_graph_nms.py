"""NMS inside the exported graph: the padded contract, equality with nms_postprocess, onnxruntime parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.dense import nms_postprocess
from cvzoo.models.detection.graph_nms import (
    META_CONF,
    META_IOU,
    META_MAX_DET,
    META_NMS,
    OUTPUT_NAMES,
    NmsDetector,
    detections_difference,
    nms_violation,
    padded_nms,
    unpad_detections,
)
from tests.models.detection.helpers import calibrated_detector


def _assert_same(expected, got, box_atol=0.0, score_atol=0.0, ordered=True):
    """Same detections per image: labels, boxes and scores within the tolerances; with ``ordered=False``
    matched by label and nearest box (near-tied scores of two runtimes may swap ranks)."""
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        if ordered:
            assert a.labels.tolist() == b.labels.tolist()
            np.testing.assert_allclose(b.boxes.numpy(), a.boxes.numpy(), rtol=0, atol=box_atol)
            np.testing.assert_allclose(b.scores.numpy(), a.scores.numpy(), rtol=0, atol=score_atol)
        else:
            box, score = detections_difference(a, b)
            assert box <= box_atol and score <= score_atol, (box, score)


def test_padded_outputs_contract_on_hand_made_predictions():
    # Image 0: two overlapping class-0 boxes (IoU 0.81 -> one kept), a class-1 box on top of them (other
    # class: kept), a box below conf. Image 1: nothing above conf.
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([[0.9, 0.0], [0.8, 0.1], [0.2, 0.7], [0.05, 0.0]])
    image0 = torch.cat([boxes, scores], dim=1)
    image1 = torch.cat([boxes, scores * 0.1], dim=1)
    out_boxes, out_scores, out_labels, num_dets = padded_nms(torch.stack([image0, image1]), 0.1, 0.5, 3)
    assert out_boxes.shape == (2, 3, 4) and out_scores.shape == (2, 3) and out_labels.shape == (2, 3)
    assert num_dets.tolist() == [2, 0]
    torch.testing.assert_close(out_scores[0], torch.tensor([0.9, 0.7, 0.0]))
    assert out_labels.tolist() == [[0, 1, -1], [-1, -1, -1]]
    torch.testing.assert_close(out_boxes[0, :2], boxes[[0, 2]])
    assert not out_boxes[0, 2:].any() and not out_boxes[1].any() and not out_scores[1].any()


@pytest.mark.parametrize("name", ["yolov8n", "yolov5n"])
def test_graph_nms_equals_nms_postprocess(name):
    model = calibrated_detector(name, num_classes=4)
    with torch.no_grad():
        predictions = model.decode(model(torch.rand(3, 3, 64, 96)))
    for conf, iou, max_det in ((0.001, 0.7, 300), (0.05, 0.45, 7), (0.999, 0.7, 5)):
        expected = nms_postprocess(predictions, conf, iou, max_det)
        outputs = padded_nms(predictions, conf, iou, max_det)
        assert outputs[3].tolist() == [len(d) for d in expected]
        _assert_same(expected, unpad_detections(outputs))


def test_unpad_detections_enforces_the_built_in_settings():
    predictions = calibrated_detector("yolov8n", num_classes=2).eval()
    with torch.no_grad():
        predictions = predictions.decode(predictions(torch.rand(1, 3, 64, 64)))
    outputs = dict(zip(OUTPUT_NAMES, padded_nms(predictions, 0.01, 0.6, 20)))
    metadata = {META_NMS: "1", META_CONF: "0.01", META_IOU: "0.6", META_MAX_DET: "20"}
    full = unpad_detections(outputs, metadata)[0]
    stricter = unpad_detections(outputs, metadata, conf=0.3, max_det=3, classes=[1])[0]
    keep = (full.scores > 0.3) & (full.labels == 1)
    assert stricter.scores.tolist() == full.scores[keep][:3].tolist()
    with pytest.raises(ValueError, match="iou=0.6 built in"):
        unpad_detections(outputs, metadata, iou=0.5)
    with pytest.raises(ValueError, match="conf=0.01 built in"):
        unpad_detections(outputs, metadata, conf=0.001)
    with pytest.raises(ValueError, match="at most 20"):
        unpad_detections(outputs, metadata, max_det=100)


def test_bad_settings_are_rejected():
    model = calibrated_detector("yolov8n", num_classes=2)
    with pytest.raises(ValueError, match="conf"):
        NmsDetector(model, conf=-0.1)
    with pytest.raises(ValueError, match="max_det"):
        NmsDetector(model, max_det=0)


@pytest.mark.parametrize("name", ["yolov8n", "yolov5n"])
def test_onnx_export_with_and_without_nms_matches_pytorch(tmp_path, name):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from cvzoo.export import OnnxTorchModel, export_onnx
    from cvzoo.models.detection.dense import DecodedDetector

    model = calibrated_detector(name, num_classes=4)
    conf, iou, max_det = 0.01, 0.6, 50
    nms_module = NmsDetector(model, conf, iou, max_det)
    example = torch.rand(1, 3, 64, 96)
    nms_path = export_onnx(nms_module, tmp_path / "nms.onnx", example, output_names=OUTPUT_NAMES,
                           metadata=nms_module.metadata(), check=True, atol=0.05,
                           compare=nms_module.parity_difference)
    # The plain graph by the same exporter as the NMS graph (NmsDetector declares the tracer), so that NMS
    # inside and outside see the same decoded numbers (the dynamo graph rounds differently: ~4e-3 pixels on
    # this calibrated detector's 300-pixel boxes).
    plain_path = export_onnx(DecodedDetector(model), tmp_path / "plain.onnx", example,
                             output_names=["predictions"], check=True, atol=0.05, exporter=nms_module.onnx_exporter)
    nms_graph, plain_graph = OnnxTorchModel(nms_path), OnnxTorchModel(plain_path)
    assert nms_graph.metadata[META_NMS] == "1" and float(nms_graph.metadata[META_IOU]) == iou
    assert nms_graph.output_names == list(OUTPUT_NAMES)
    for batch in (1, 3):  # the batch is dynamic
        images = torch.rand(batch, 3, 64, 96)
        with torch.no_grad():
            expected = model.postprocess(model(images), conf, iou, max_det)
        outputs = nms_graph(images)
        assert outputs["boxes"].shape == (batch, max_det, 4) and outputs["num_dets"].shape == (batch,)
        assert outputs["labels"].dtype == torch.int64 and outputs["num_dets"].dtype == torch.int64
        in_graph = unpad_detections(outputs, nms_graph.metadata)
        # Against PyTorch: the same detections; boxes differ only by the float error of the decoded
        # predictions (the exporter folds BatchNorm into the convolutions), scores likewise.
        _assert_same(expected, in_graph, box_atol=0.05, score_atol=1e-4, ordered=False)
        # Against NMS run outside on the plain export's output: the same numbers.
        outside = nms_postprocess(plain_graph(images), conf, iou, max_det)
        _assert_same(outside, in_graph, box_atol=1e-5, score_atol=1e-6)


def _candidates(rows):
    """``[A, 4 + 2]`` predictions from ``(x1, y1, x2, y2, score, class)`` rows (the other class scores 0)."""
    out = torch.zeros(len(rows), 6)
    for i, (*box, score, cls) in enumerate(rows):
        out[i, :4], out[i, 4 + cls] = torch.tensor(box, dtype=torch.float32), score
    return out


def _kept(pred, indices):
    scores, labels = pred[indices, 4:].max(dim=-1)
    return Detections(pred[indices, :4], scores, labels)


def test_nms_violation_accepts_either_result_of_a_tie_even_with_another_count():
    # A and B tie and overlap; B also overlaps C, A does not. Visiting A first keeps {A, C}; visiting B first
    # keeps {B} alone (it suppresses both): two valid results of different counts, as runtimes give them.
    pred = _candidates([(0, 0, 10, 10, 0.9, 0), (3, 0, 13, 10, 0.9, 0), (7, 0, 17, 10, 0.8, 0)])
    assert nms_violation(pred, _kept(pred, [0, 2]), conf=0.1, iou=0.3, max_det=10) == 0.0
    assert nms_violation(pred, _kept(pred, [1]), conf=0.1, iou=0.3, max_det=10) == 0.0


def test_nms_violation_rejects_what_greedy_nms_cannot_give():
    pred = _candidates([(0, 0, 10, 10, 0.9, 0), (3, 0, 13, 10, 0.85, 0), (50, 50, 60, 60, 0.5, 1)])
    # The far box of class 1 is suppressed by nothing: leaving it out is wrong ...
    assert nms_violation(pred, _kept(pred, [0]), conf=0.1, iou=0.3, max_det=10) == float("inf")
    # ... unless max_det cut it (it scores below the last kept box).
    assert nms_violation(pred, _kept(pred, [0]), conf=0.1, iou=0.3, max_det=1) == 0.0
    # ... or the threshold did.
    assert nms_violation(pred, _kept(pred, [0]), conf=0.6, iou=0.3, max_det=10) == 0.0
    # Two kept boxes of one class overlapping beyond the IoU threshold.
    assert nms_violation(pred, _kept(pred, [0, 1, 2]), conf=0.1, iou=0.3, max_det=10) == float("inf")
    # The lower of two overlapping boxes cannot suppress the higher one.
    assert nms_violation(pred, _kept(pred, [1, 2]), conf=0.1, iou=0.3, max_det=10) == float("inf")
    assert nms_violation(pred, _kept(pred, [0, 2]), conf=0.1, iou=0.3, max_det=10) == 0.0


def test_export_check_accepts_a_tie_broken_the_other_way():
    # The export check (NmsDetector.parity_difference) on the tie above: PyTorch keeps {A, C}, the other
    # runtime {B}; both are valid NMS results, so the difference is 0, not "another count".
    pred = _candidates([(0, 0, 10, 10, 0.9, 0), (3, 0, 13, 10, 0.9, 0), (7, 0, 17, 10, 0.8, 0)])

    class Fixed(torch.nn.Module):
        def forward(self, images):
            return pred[None]

        def decode(self, outputs):
            return outputs

    def padded(indices, max_det=10):
        kept = _kept(pred, indices)
        boxes, scores, labels = torch.zeros(1, max_det, 4), torch.zeros(1, max_det), torch.full((1, max_det), -1)
        boxes[0, :len(indices)], scores[0, :len(indices)], labels[0, :len(indices)] = kept.boxes, kept.scores, kept.labels
        return [boxes, scores, labels, torch.tensor([len(indices)])]

    detector = NmsDetector(Fixed(), conf=0.1, iou=0.3, max_det=10)
    images = torch.zeros(1, 3, 8, 8)
    assert detector.parity_difference(images, padded([0, 2]), [t.numpy() for t in padded([1])]) == 0.0
    # A result that drops C without reason is still caught.
    assert detector.parity_difference(images, padded([0, 2]), [t.numpy() for t in padded([0])]) == float("inf")


def test_nms_violation_lets_a_tied_class_suppress():
    # B scores the same in both classes (its best class is 0 to PyTorch, may be 1 to another runtime); the
    # kept box A of class 1 overlaps it and scores higher, so leaving B out is valid. C, far away and of
    # class 0 only, must be kept.
    pred = torch.tensor([[0, 0, 10, 10, 0.0, 0.9],
                         [1, 0, 11, 10, 0.5, 0.5],
                         [50, 50, 60, 60, 0.5, 0.1]])
    assert nms_violation(pred, _kept(pred, [0, 2]), conf=0.1, iou=0.3, max_det=10) == 0.0
    assert nms_violation(pred, _kept(pred, [0]), conf=0.1, iou=0.3, max_det=10) == float("inf")
