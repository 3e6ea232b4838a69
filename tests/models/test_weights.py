"""Checkpoint loading: strict errors, partial loading, wrappers, remaps, file errors, downloads."""

from __future__ import annotations

import hashlib
import logging
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.models import create_model
from cvzoo.models.classification.vgg import VGG, VGG11
from cvzoo.models.registry import UnknownModelError
from cvzoo.models.weights import (
    LoadReport,
    WeightsError,
    WeightsFileError,
    WeightsHashError,
    WeightsMismatchError,
    download_weights,
    load_weights,
    register_remap,
    sha256sum,
)


def _same_tensors(a: nn.Module, b: nn.Module, skip: tuple[str, ...] = ()) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


def test_wrong_model_checkpoint_lists_keys_and_names_the_source(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "r18.pt"
    torch.save({"model": create_model("resnet18").state_dict(), "model_name": "resnet18", "epoch": 3}, path)
    target = create_model("resnet34")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(WeightsMismatchError) as info:
        load_weights(target, path)
    message = str(info.value)
    assert "r18.pt" in message and "ResNet" in message
    assert "'resnet18'" in message  # the model name the checkpoint records
    assert "layer1.2.conv1.weight" in message  # resnet34 has 3 blocks in layer1, resnet18 has 2
    assert "missing" in message and "more)" in message  # long lists are cut at 20 with a count
    # A failed strict load leaves the model untouched.
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_shape_mismatch_lists_both_shapes():
    source = create_model("resnet20_cifar", num_classes=10)
    target = create_model("resnet20_cifar", num_classes=4)
    with pytest.raises(WeightsMismatchError, match=r"fc\.weight checkpoint \[10, 64\] vs model \[4, 64\]") as info:
        load_weights(target, source.state_dict())
    assert "does not record its model name" in str(info.value)


def test_partial_load_keeps_backbone_and_reports_head(tmp_path, caplog):
    torch.manual_seed(0)
    source = create_model("resnet18", num_classes=1000)
    path = tmp_path / "tv.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)
    target = create_model("resnet18", num_classes=5, weights=None)
    head_before = target.fc.weight.clone()
    with caplog.at_level(logging.WARNING, logger="cvzoo.models.weights"):
        report = load_weights(target, path, strict=False)
    assert isinstance(report, LoadReport) and not report.ok
    assert [k for k, _, _ in report.mismatched_shapes] == ["fc.weight", "fc.bias"]
    assert report.mismatched_shapes[0][1:] == ((1000, 512), (5, 512))
    assert not report.missing and not report.unexpected
    assert len(report.loaded) == len(source.state_dict()) - 2
    assert _same_tensors(source, target, skip=("fc.",))
    assert torch.equal(target.fc.weight, head_before)  # the new head keeps its initialisation
    assert "fc.weight" in caplog.text
    # The same through create_model.
    model = create_model("resnet18", num_classes=5, weights=str(path), strict=False)
    assert _same_tensors(source, model, skip=("fc.",))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {f"module.{k}": v for k, v in sd.items()},  # DistributedDataParallel
        lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()},  # torch.compile
        lambda sd: {"model": sd, "optimizer": {"state": {}}, "epoch": 7},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
        lambda sd: {"ema": sd},
    ],
    ids=["ddp", "compile", "model-key", "state_dict-key+ddp", "ema-key"],
)
def test_checkpoint_wrappers_load(wrap, tmp_path):
    torch.manual_seed(0)
    source = create_model("lenet")
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(source.state_dict()), path)
    target = create_model("lenet")
    report = load_weights(target, path)
    assert report.ok and report.remap == "identity"
    assert _same_tensors(source, target)


def test_training_checkpoint_with_numpy_rng_state_loads_weights_only(tmp_path):
    torch.manual_seed(0)
    source = create_model("lenet")
    path = tmp_path / "last.pt"
    rng = {"numpy": np.random.get_state(), "python": (3, tuple(range(5)), None)}
    torch.save({"model": source.state_dict(), "rng": rng, "model_name": "lenet"}, path)
    target = create_model("lenet")
    assert load_weights(target, path).source_model == "lenet"
    assert _same_tensors(source, target)


class _Opaque:
    """A pickled custom object: weights_only loading must refuse it."""


def test_file_errors(tmp_path):
    model = create_model("lenet")
    with pytest.raises(WeightsFileError, match="not found"):
        load_weights(model, tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsFileError, match="garbage.pt"):
        load_weights(model, garbage)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(WeightsFileError, match="expected a state dict"):
        load_weights(model, listed)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 1, "note": "no tensors"}, empty)
    with pytest.raises(WeightsFileError, match="no tensors found"):
        load_weights(model, empty)
    pickled = tmp_path / "object.pt"
    torch.save({"model": model.state_dict(), "extra": _Opaque()}, pickled, pickle_module=pickle)
    with pytest.raises(WeightsFileError, match="trusted=True"):
        load_weights(model, pickled)
    assert load_weights(model, pickled, trusted=True).ok
    with pytest.raises(WeightsError, match="unknown remap"):
        load_weights(model, model.state_dict(), remap="no-such-remap")


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(UnknownModelError, match="resnet50"):
        create_model("resnet5")
    with pytest.raises(UnknownModelError, match="vgg16_bn"):
        create_model("vgg16bn")


def _small_timm_vgg11(num_classes: int, hidden: int, skip_init) -> nn.Module:
    import timm
    from timm.layers import ClassifierHead
    from timm.models.vgg import ConvMlp

    with skip_init():  # the 4096-wide fc6/fc7 are replaced below; don't pay for initialising them
        model = timm.create_model("vgg11", num_classes=num_classes)
    model.pre_logits = ConvMlp(512, hidden, 7, drop_rate=0.0)
    model.head = ClassifierHead(hidden, num_classes)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    return model.eval()


def test_timm_vgg_layout_is_remapped_automatically(skip_init):
    reference = _small_timm_vgg11(num_classes=7, hidden=64, skip_init=skip_init)
    ours = VGG(VGG11, num_classes=7, hidden_dim=64).eval()
    with pytest.raises(WeightsMismatchError, match="pre_logits.fc1.weight"):
        load_weights(ours, reference.state_dict(), remap=None)
    report = load_weights(ours, reference.state_dict())
    assert report.remap == "timm:vgg" and report.ok
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        # fc6 as a 7x7 conv vs a linear layer sums 25088 products in another order: float32 rounding.
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-4, atol=1e-5)


def test_custom_remap_callable_and_registry(tmp_path):
    torch.manual_seed(0)
    source = create_model("lenet")
    renamed = {k.replace("fc", "dense"): v for k, v in source.state_dict().items()}
    target = create_model("lenet")

    def dense_to_fc(state):
        return {k.replace("dense", "fc"): v for k, v in state.items()}

    assert load_weights(target, renamed, remap=dense_to_fc).ok
    assert _same_tensors(source, target)
    with pytest.raises(ValueError, match="already registered"):
        register_remap("vgg", dense_to_fc, name="timm:vgg")


def test_sha256_and_file_url_download(tmp_path):
    payload = tmp_path / "src" / "lenet-weights.pth"
    payload.parent.mkdir()
    torch.manual_seed(0)
    source = create_model("lenet")
    torch.save(source.state_dict(), payload)
    digest = sha256sum(payload)
    assert digest == hashlib.sha256(payload.read_bytes()).hexdigest()

    cache = tmp_path / "cache"
    with pytest.raises(WeightsHashError, match="sha256 mismatch"):
        download_weights(payload.as_uri(), "0" * 64, cache_dir=cache)
    assert not cache.exists() or not any(cache.iterdir())  # nothing with a bad hash is kept

    path = download_weights(payload.as_uri(), digest, cache_dir=cache)
    assert path == cache / "lenet-weights.pth" and sha256sum(path) == digest
    target = create_model("lenet", weights=str(path))
    assert _same_tensors(source, target)

    payload.unlink()  # served from the cache now; a prefix of the hash is enough
    assert download_weights(payload.as_uri(), digest[:8], cache_dir=cache) == path
    with pytest.raises(WeightsHashError, match="hex digits"):
        download_weights(payload.as_uri(), "xyz", cache_dir=cache)
