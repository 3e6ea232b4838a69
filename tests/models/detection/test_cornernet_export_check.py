"""CornerNet's export check: another runtime may pick the other side of a near-tie among the corners (and so
decode other rows), which the check accepts; anything else it still rejects (issue #21, docs/cornernet.md).

The hand-made maps: one class, 8 x 8 maps (stride 4), top-k 2, embeddings and offsets 0. Top-left peaks at
(y, x) = (1, 1) (logit 2), (1, 5) (logit 1) and (5, 1), bottom-right peaks at (2, 6) and (6, 6). With the
third top-left logit 1 -/+ 1e-5, the second and third top-left corners tie within the float error of two
runtimes: one runtime decodes (1, 5) and its two pairs, the other (5, 1) and its one pair.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.cornernet.candidates import corner_choices, corner_pair_candidates
from cvzoo.models.detection.cornernet.decode import decode_corners
from cvzoo.models.detection.cornernet.model import MAP_NAMES, CornerNet, CornerPairsExport
from cvzoo.models.detection.export_check import decoded_rows_difference
from cvzoo.models.detection.graph_nms import NmsDetector, nms_violation

STRIDE, K = 4, 2


def _maps(third_logit: float) -> dict[str, torch.Tensor]:
    """The module docstring's maps (batch of one), the third top-left peak at ``third_logit``."""
    tl, br = torch.full((1, 1, 8, 8), -10.0), torch.full((1, 1, 8, 8), -10.0)
    tl[0, 0, 1, 1], tl[0, 0, 1, 5], tl[0, 0, 5, 1] = 2.0, 1.0, third_logit
    br[0, 0, 6, 6], br[0, 0, 2, 6] = 2.0, 1.5
    zeros = torch.zeros(1, 1, 8, 8)
    return dict(zip(MAP_NAMES, (tl, br, zeros, zeros.clone(), torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8))))


def _decode(maps: dict[str, torch.Tensor]) -> torch.Tensor:
    return decode_corners(*(maps[name] for name in MAP_NAMES), stride=STRIDE, k=K)[0]


def _candidates(maps: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return corner_pair_candidates(*(maps[name][0] for name in MAP_NAMES), stride=STRIDE, k=K)


def test_corner_choices_widen_the_top_k_by_the_near_ties_only():
    tie, clear = _maps(1.0 - 1e-5)["tl_heatmap"][0], _maps(0.0)["tl_heatmap"][0]
    flat = {(1, 1): 9, (1, 5): 13, (5, 1): 41}
    _, may, must = corner_choices(tie, K, tol=1e-4)
    assert may.nonzero().flatten().tolist() == sorted(flat.values())  # either of the tied two
    assert must.nonzero().flatten().tolist() == [flat[1, 1]]
    _, may, must = corner_choices(clear, K, tol=1e-4)  # the third peak is far below the second
    assert may.nonzero().flatten().tolist() == must.nonzero().flatten().tolist() == [flat[1, 1], flat[1, 5]]
    # A flat map: every position ties with its neighbours; any may be a peak, none must be.
    _, may, must = corner_choices(torch.zeros(1, 4, 4), K, tol=1e-4)
    assert bool(may.all()) and not bool(must.any())


def test_the_other_side_of_a_near_tie_passes_where_rows_differ_by_16_pixels():
    pytorch, other = _decode(_maps(1.0 - 1e-5)), _decode(_maps(1.0 + 1e-5))
    # Row for row, the two correct decodings are 16 pixels apart: the element-wise check's failure.
    assert float((pytorch - other).abs().max()) == pytest.approx(16.0)
    assert int((pytorch[:, 4:] > 0).sum()) == 4 and int((other[:, 4:] > 0).sum()) == 3
    candidates, required = _candidates(_maps(1.0 - 1e-5))
    assert len(candidates) == 5 and int(required.sum()) == 2  # (1, 1)'s two pairs must be there
    assert decoded_rows_difference(candidates, required, pytorch) == 0.0
    assert decoded_rows_difference(candidates, required, other) < 1e-5


def test_the_check_rejects_what_no_runtime_may_decode():
    candidates, required = _candidates(_maps(1.0 - 1e-5))
    rows = _decode(_maps(1.0 - 1e-5))
    shifted = rows.clone()
    shifted[0, 0] += 1.0  # a box one pixel off
    assert decoded_rows_difference(candidates, required, shifted) == pytest.approx(1.0)
    rescored = rows.clone()
    rescored[0, 4] += 1e-3  # a score 1e-3 off
    assert decoded_rows_difference(candidates, required, rescored) == pytest.approx(1e-3, rel=1e-3)
    dropped = rows.clone()
    dropped[0, 4:] = 0  # a pair of the certain corner (1, 1) missing
    assert decoded_rows_difference(candidates, required, dropped) == float("inf")
    doubled = rows.clone()
    doubled[1] = doubled[0]  # one pair twice (and another missing)
    assert decoded_rows_difference(candidates, required, doubled) == float("inf")
    # The third corner far below the second (logit 0): decoding it instead is wrong, not a tie.
    clear_candidates, clear_required = _candidates(_maps(0.0))
    assert decoded_rows_difference(clear_candidates, clear_required, _decode(_maps(1.0 + 1e-5))) == float("inf")


def test_pytorch_and_perturbed_maps_of_a_fresh_model_are_correct_decodings():
    # A fresh model's heatmaps are nearly flat: its decodings are where runtimes disagree.
    torch.manual_seed(0)
    model = create_model("cornernet", num_classes=3).eval()
    with torch.no_grad():
        outputs = model(torch.rand(2, 3, 64, 64))
        noisy = {name: value + 1e-6 * torch.randn_like(value) for name, value in outputs.items()}
        rows, noisy_rows = model.decode(outputs), model.decode(noisy)
    for (candidates, required), exact, perturbed in zip(model.export_candidates(outputs), rows, noisy_rows):
        assert 0 < int(required.sum()) <= len(candidates)
        assert decoded_rows_difference(candidates, required, exact) == 0.0
        assert decoded_rows_difference(candidates, required, perturbed) < 1e-4


class _WrongOffsets(CornerPairsExport):
    """A broken export: its graph moves every corner by a quarter of a map pixel."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        outputs = dict(self.model(images))
        outputs["tl_offset"] = outputs["tl_offset"] + 0.25
        return self.model.decode(outputs)


def test_onnxruntime_export_passes_and_a_wrong_graph_fails(tmp_path):
    pytest.importorskip("onnxruntime")
    from cvzoo.export.onnx import ExportParityError, export_onnx

    torch.manual_seed(0)
    model = create_model("cornernet", num_classes=2).eval()
    example = torch.rand(1, 3, 64, 64)
    module = model.export_module()
    assert isinstance(module, CornerPairsExport)
    # The tracer: ~1 s here where the torch.export-based default takes several (docs/cornernet.md's
    # `cvzoo export` line runs that one in tests/test_docs_shell.py).
    export_onnx(module, tmp_path / "ok.onnx", example, output_names=["predictions"], exporter="torchscript",
                compare=module.parity_difference)
    wrong = _WrongOffsets(model)
    with pytest.raises(ExportParityError, match="differ from PyTorch"):  # 0.25 map pixels = 1 pixel
        export_onnx(wrong, tmp_path / "wrong.onnx", example, output_names=["predictions"], exporter="torchscript",
                    compare=wrong.parity_difference)


class _FixedMaps(CornerNet):
    """A CornerNet whose raw maps are given (the hand-made ones), for the graph-NMS check."""

    def __init__(self, maps: dict[str, torch.Tensor]) -> None:
        super().__init__(num_classes=1, channels=(8, 8, 8), modules=(1, 1, 1), num_stacks=1, stem_channels=8,
                         feature_channels=8, pool_channels=8, head_channels=8, top_k=K)
        self.maps = maps

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.maps


def test_graph_nms_check_accepts_the_other_side_of_a_corner_tie():
    images = torch.zeros(1, 3, 32, 32)
    settings = {"conf": 0.1, "iou": 0.9, "max_det": 10}
    pytorch = NmsDetector(_FixedMaps(_maps(1.0 - 1e-5)), **settings)
    with torch.no_grad():
        expected, other = pytorch(images), NmsDetector(_FixedMaps(_maps(1.0 + 1e-5)), **settings)(images)
        wrong_reference = NmsDetector(_FixedMaps(_maps(0.0)), **settings)
        assert int(expected[3]) == 4 and int(other[3]) == 3
        assert pytorch.parity_difference(images, expected, [t.numpy() for t in other]) < 1e-5
        # Against maps whose third corner is far below the second, the same detections are wrong.
        assert wrong_reference.parity_difference(images, expected, [t.numpy() for t in other]) == float("inf")


def test_nms_violation_needs_no_reason_for_a_candidate_that_may_not_exist():
    predictions = torch.tensor([[0.0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.8]])
    kept = predictions[:1]

    found = Detections(kept[:, :4], kept[:, 4], torch.zeros(1, dtype=torch.long))
    assert nms_violation(predictions, found, 0.1, 0.5, 10) == float("inf")
    assert nms_violation(predictions, found, 0.1, 0.5, 10, required=torch.tensor([True, False])) == 0.0
    assert nms_violation(predictions, found, 0.1, 0.5, 10, required=torch.tensor([True, True])) == float("inf")


def test_candidates_of_a_batch_are_per_image():
    model = _FixedMaps({name: torch.cat([value, value]) for name, value in _maps(1.0 - 1e-5).items()})
    candidates = model.export_candidates(model.raw_outputs(torch.zeros(2, 3, 32, 32)))
    assert len(candidates) == 2 and all(len(c) == 5 for c, _ in candidates)
    np.testing.assert_array_equal(candidates[0][0].numpy(), candidates[1][0].numpy())
