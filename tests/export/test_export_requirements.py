import importlib.util

import pytest
import torch

from cvzoo.export import onnx as onnx_export


def test_missing_export_extra_is_one_clear_error_before_any_work(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnx" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"needs onnx, .*pip install 'cvzoo\[export\]'"):
        onnx_export.export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx", torch.zeros(1, 2))
    assert not (tmp_path / "m.onnx").exists()
