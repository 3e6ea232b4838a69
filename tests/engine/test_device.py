"""select_device: a device this machine does not have is one clear error naming the key it came from."""

import pytest
import torch

from cvzoo.engine import device as device_module
from cvzoo.engine.device import DeviceError, select_device


def test_cuda_without_cuda_names_train_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"^train\.device: 'cuda' requested but no CUDA device is available"):
        select_device("cuda")
    with pytest.raises(DeviceError, match=r"^device: 'cuda:0' requested"):
        select_device("cuda:0", key="device")


def test_a_cuda_index_beyond_the_machine_names_the_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"'cuda:2' requested but this machine has 2 CUDA device\(s\)"):
        select_device("cuda:2")


def test_mps_without_mps_names_the_key(monkeypatch):
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match=r"^device: 'mps' requested but no MPS device is available"):
        select_device("mps", key="device")


def test_an_unknown_device_string_is_a_device_error():
    with pytest.raises(DeviceError, match=r"^train\.device: 'gpu' is not a device"):
        select_device("gpu")


def test_a_device_error_is_a_value_error_and_still_a_runtime_error(monkeypatch):
    # ValueError: the CLI reports it in one line; RuntimeError: what callers caught before.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for kind in (ValueError, RuntimeError):
        with pytest.raises(kind):
            select_device("cuda")


def test_cpu_and_auto_still_work():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type in ("cpu", "cuda", "mps")
