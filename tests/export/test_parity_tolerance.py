"""The export check's tolerance scales with each output's magnitude: runtimes round float32 relatively."""

import pytest
import torch
from torch import nn

from cvzoo.export import onnx as onnx_export
from cvzoo.export import runtime


class Pixels(nn.Module):
    """Outputs of the size of a 640 px image's box coordinates, and probabilities."""

    def forward(self, x):
        return x * 640.0, x.sigmoid()


def fake_runtime(relative_error: float, absolute_error: float):
    class Runtime:
        output_names = ["boxes", "probs"]

        def __init__(self, path):
            pass

        def __call__(self, x):
            boxes, probs = (o.numpy() for o in Pixels()(torch.from_numpy(x)))
            return [boxes * (1 + relative_error), probs + absolute_error]

    return Runtime


@pytest.mark.parametrize(("relative", "absolute", "passes"), [
    (3e-6, 0.0, True),   # 0.0019 px at 640: float32 rounding of another runtime, which a fixed 1e-4 refused
    (1e-3, 0.0, False),  # 0.64 px: a wrong graph
    (0.0, 5e-5, True),
    (0.0, 5e-4, False),  # probabilities keep the plain 1e-4
])
def test_the_tolerance_is_relative_to_the_outputs_magnitude(monkeypatch, tmp_path, relative, absolute, passes):
    monkeypatch.setattr(runtime, "OnnxRuntimeModel", fake_runtime(relative, absolute))
    x = torch.rand(1, 4)
    if passes:
        assert onnx_export.check_onnx_parity(Pixels(), tmp_path / "m.onnx", x) < 1e-2
    else:
        with pytest.raises(onnx_export.ExportParityError, match="largest magnitude"):
            onnx_export.check_onnx_parity(Pixels(), tmp_path / "m.onnx", x)
