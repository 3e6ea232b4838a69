"""`cvzoo benchmark`: one row per format with size, latency, throughput and metric; a format that fails is a
row with its error, not a crash."""

import csv
import importlib.util

import pytest

pytest.importorskip("onnxruntime")

from cvzoo.cli.main import main  # noqa: E402
from tests.export.conftest import untrained_checkpoint  # noqa: E402


def test_benchmark_rows_table_csv_and_a_failing_format(tmp_path, capsys, monkeypatch):
    weights = untrained_checkpoint(tmp_path / "best.pt", "classify", "lenet_mnist", "fashion_mnist_sample",
                                   ["data.limit_train=16", "data.limit_val=32"])
    real = importlib.util.find_spec
    # The forced failure: OpenVINO "not installed".
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    assert main(["benchmark", str(weights), "--formats", "torch,onnx,onnx-int8,openvino", "--runs", "3",
                 "--warmup", "1", "--batch", "4", "--calib", "4", "--threads", "1", "--out", str(tmp_path / "b")]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:5] == ["format", "size_mb", "latency_ms", "throughput_ips", "metric"]
    rows = {row["format"]: row for row in csv.DictReader((tmp_path / "b" / "benchmark.csv").open())}
    assert list(rows) == ["torch", "onnx", "onnx-int8", "openvino"]
    for name in ("torch", "onnx", "onnx-int8"):
        row = rows[name]
        assert not row["error"] and float(row["latency_ms"]) > 0 and float(row["throughput_ips"]) > 0, row
        assert row["metric"] == "top1" and 0 <= float(row["value"]) <= 1
    assert rows["onnx"]["value"] == rows["torch"]["value"]
    assert float(rows["onnx-int8"]["size_mb"]) < float(rows["onnx"]["size_mb"])
    assert "ImportError" in rows["openvino"]["error"] and "pip install 'cvzoo[openvino]'" in rows["openvino"]["error"]
    assert not rows["openvino"]["latency_ms"]
    assert "pip install 'cvzoo[openvino]'" in table


def test_unknown_format_is_a_one_line_error(tmp_path, capsys):
    assert main(["benchmark", str(tmp_path / "x.pt"), "--formats", "tensorrt"]) == 2
    assert "unknown format 'tensorrt'" in capsys.readouterr().err
