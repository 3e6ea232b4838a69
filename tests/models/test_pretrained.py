"""Published weights by name (``resnet18.tv_in1k``, ``pretrained=True``) and timm's create_model keywords.

No test touches the network: published weights are served by a local HTTP server from a checkpoint the
test writes (registered with ``register_weights``), and the offline path is exercised with the download
failing as it does on a machine without network.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
import urllib.error
import urllib.request

import pytest
import torch
import torchvision

from cvzoo.models import create_model
from cvzoo.models.pretrained import UnknownWeightsError, default_tag, register_weights, weight_sets
from cvzoo.models.pretrained_table import DEFAULT_TAGS, WEIGHT_SETS
from cvzoo.models.registry import ModelArgumentError, get_entry
from cvzoo.models.weights import WeightsError, WeightsHashError, adapt_input_conv, sha256sum


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A torchvision-layout resnet18 checkpoint (random weights, 1000 classes) behind a local HTTP server."""
    root = tmp_path_factory.mktemp("server")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    path = root / "resnet18-local.pth"
    torch.save(reference.state_dict(), path)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield reference, f"http://127.0.0.1:{server.server_address[1]}/{path.name}", sha256sum(path), server
    server.shutdown()


def test_a_tag_downloads_verifies_caches_and_loads_the_weights(served, tmp_path):
    reference, url, digest, _ = served
    register_weights("resnet18", "local_http", url, digest, num_classes=1000)
    cache = tmp_path / "cache"
    model = create_model("resnet18.local_http", cache_dir=str(cache)).eval()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image), reference(image), rtol=0, atol=1e-5)
    assert (cache / "resnet18-local.pth").is_file()
    # A second model comes from the cache: a broken URL is never opened for a verified cached file.
    register_weights("resnet18", "local_cached", url.replace("127.0.0.1", "127.0.0.1:1"), digest, num_classes=1000)
    create_model("resnet18.local_cached", cache_dir=str(cache))


def test_another_class_count_loads_the_backbone_and_replaces_the_head(served, tmp_path):
    reference, url, digest, _ = served
    register_weights("resnet18", "local_head", url, digest[:8], num_classes=1000)
    model = create_model("resnet18.local_head", num_classes=7, cache_dir=str(tmp_path)).eval()
    assert model.fc.out_features == 7
    torch.testing.assert_close(model.conv1.weight, reference.conv1.weight)


def test_in_chans_adapts_the_first_convolution_as_timm_does(served, tmp_path):
    reference, url, digest, _ = served
    register_weights("resnet18", "local_grey", url, digest, num_classes=1000)
    grey = create_model("resnet18.local_grey", in_chans=1, cache_dir=str(tmp_path)).eval()
    torch.testing.assert_close(grey.conv1.weight, reference.conv1.weight.sum(1, keepdim=True))
    image = torch.rand(1, 1, 64, 64)
    with torch.no_grad():  # a grey image through the summed kernel = the same grey in all three RGB channels
        torch.testing.assert_close(grey(image), reference(image.expand(-1, 3, -1, -1)), rtol=1e-4, atol=1e-4)


def test_adapt_input_conv_keeps_the_response_for_more_channels():
    """RGB repeated and scaled by 3/C: for a multiple of 3 channels, an input equal in every channel gives the
    RGB response."""
    weight = torch.randn(8, 3, 3, 3)
    assert adapt_input_conv(weight, 4).shape == (8, 4, 3, 3)
    six = adapt_input_conv(weight, 6)
    x = torch.rand(1, 1, 9, 9)
    torch.testing.assert_close(torch.nn.functional.conv2d(x.expand(-1, 6, -1, -1), six),
                               torch.nn.functional.conv2d(x.expand(-1, 3, -1, -1), weight))


def test_a_wrong_hash_is_an_error_and_keeps_no_file(served, tmp_path):
    _, url, digest, _ = served
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    register_weights("resnet18", "local_wrong", url, wrong, num_classes=1000)
    with pytest.raises(WeightsHashError, match="sha256 mismatch"):
        create_model("resnet18.local_wrong", cache_dir=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_offline_says_which_file_to_place_where(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsError) as err:
        create_model("resnet18.tv_in1k", cache_dir=str(tmp_path))
    message = str(err.value)
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in message
    assert str(tmp_path / "resnet18-f37072fd.pth") in message and "f37072fd" in message


def test_an_unknown_tag_lists_the_known_ones():
    with pytest.raises(UnknownWeightsError, match=r"resnet50\.tv_in1k.*resnet50\.tv_in1k_v2"):
        create_model("resnet50.imagenet")
    with pytest.raises(UnknownWeightsError, match="no published weights"):
        create_model("lenet", pretrained=True)
    with pytest.raises(ValueError, match="not both"):
        create_model("resnet18.tv_in1k", weights="x.pth")


def test_the_table_is_what_torchvision_and_timm_publish():
    """Every row's URL, hash and default against the installed references (the table is generated from them
    by tools/gen_pretrained_table.py, which also checked each one loads strictly)."""
    import timm

    assert len(WEIGHT_SETS) >= 80
    for arch, tag, url, sha256, num_classes, source in WEIGHT_SETS:
        assert re.search(rf"-{sha256}\.\w+$", url), url
        entry = get_entry(arch)
        if source == "torchvision":
            enum = torchvision.models.get_model_weights(entry.reference.split(":", 1)[1])
            match = [w for w in enum if w.url == url]
            assert match, (arch, tag)
            assert num_classes in (len(match[0].meta["categories"]), len(match[0].meta["categories"]) - 1)
            if match[0] == enum.DEFAULT:
                assert DEFAULT_TAGS[arch] == tag
        else:
            timm_arch = entry.timm_arch
            cfg = timm.models.get_pretrained_cfg(f"{timm_arch}.{tag.removeprefix('timm_')}")
            assert cfg.url == url and cfg.num_classes == num_classes
    assert default_tag("resnet50") == "tv_in1k_v2" and "timm_a1_in1k" in weight_sets("resnet50")
    assert default_tag("fasterrcnn_resnet50_fpn") == "tv_coco"


def test_timm_keywords_features_only_out_indices_and_global_pool():
    features = create_model("resnet18", features_only=True, out_indices=(1, -1))
    maps = features(torch.rand(1, 3, 64, 64))
    assert [m.shape[1] for m in maps] == [64, 512] and [m.shape[-1] for m in maps] == [16, 2]
    model = create_model("resnet18", num_classes=0, global_pool="max").eval()
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(image), model.forward_features(image)[-1].amax((2, 3)))
    with pytest.raises(ValueError, match="global_pool=.max. is not available for LeNet"):
        create_model("lenet", global_pool="max")
    with pytest.raises(ModelArgumentError, match="not both"):
        create_model("resnet18", in_chans=1, in_channels=1)
    with pytest.raises(ValueError, match="features_only"):
        create_model("resnet18", out_indices=(1,))


def test_a_checkpoint_of_a_run_started_from_a_weight_set_reloads_without_downloading(tmp_path, monkeypatch):
    """The run's config keeps ``lenet_mnist.<tag>``; val / predict / export rebuild the architecture only (the
    checkpoint holds the trained weights) and never fetch the set, which offline would fail."""
    from cvzoo import api
    from tests.export.conftest import untrained_checkpoint

    path = untrained_checkpoint(tmp_path / "best.pt", "classify", "lenet_mnist", "fashion_mnist_sample")
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["config"]["model"]["name"] = "lenet_mnist.some_published_set"
    torch.save(checkpoint, path)

    def no_network(*args, **kwargs):
        raise AssertionError("rebuilding a checkpoint must not download weights")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    task, model, _ = api.load_trained(path)
    torch.testing.assert_close(model.state_dict(), checkpoint["model"])
