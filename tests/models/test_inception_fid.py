"""The FID Inception-v3 against pytorch-fid's ``InceptionV3([3])`` built from the same (random) weights.

pytorch-fid downloads its weights file; here its loader is patched to read a state dict made from a
seeded random torchvision Inception-v3 (1008 classes, no aux head: the file's layout), with batch-norm
statistics taken from one batch, so that every layer's output is of a size that a wrong pool shows.
"""

import pytest
import torch
import torchvision

from cvzoo.config import ConfigError
from cvzoo.models.classification.inception_fid import FID_FEATURES, load_fid_inception
from cvzoo.models.weights import WeightsMismatchError
from cvzoo.tasks.gan import InceptionFeatures, feature_extractor

pytorch_fid_inception = pytest.importorskip("pytorch_fid.inception")


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=True)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # the running statistics become exactly one batch's
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, std=0.1)
    # Batch statistics of inputs like the tests' (noise at 299 px, and at 64 and 28 px upsampled to 299 as
    # both networks do), so the eval-mode features have the size of real ones (pool3 values of a few units).
    def at_299(side: int, channels: int = 3) -> torch.Tensor:
        noise = (torch.rand(1, channels, side, side) * 2 - 1).expand(-1, 3, -1, -1)
        return torch.nn.functional.interpolate(noise, size=(299, 299), mode="bilinear", align_corners=False)

    with torch.no_grad():
        reference.train()(torch.cat([at_299(299), at_299(64), at_299(28, channels=1)]))
    path = tmp_path_factory.mktemp("fid") / "pt_inception-random.pth"
    torch.save(reference.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def pytorch_fid_model(weights_file):
    patch = pytest.MonkeyPatch()
    patch.setattr(pytorch_fid_inception, "load_state_dict_from_url",
                  lambda *args, **kwargs: torch.load(weights_file, map_location="cpu"))
    try:
        # pytorch-fid's defaults: inputs in [0, 1], resized to 299 bilinearly, mapped to [-1, 1] by 2x - 1.
        model = pytorch_fid_inception.InceptionV3([pytorch_fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
    finally:
        patch.undo()
    return model.eval()


def _pytorch_fid_pool3(model, images_in_minus1_1):
    with torch.no_grad():
        return model((images_in_minus1_1 + 1) / 2)[0].flatten(1)  # [-1, 1] -> pytorch-fid's [0, 1]


@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 3, 299, 299)])
def test_pool3_features_match_pytorch_fid(weights_file, pytorch_fid_model, shape):
    torch.manual_seed(1)
    images = torch.rand(shape) * 2 - 1
    expected = _pytorch_fid_pool3(pytorch_fid_model, images)
    with torch.no_grad():
        ours = load_fid_inception(weights_file)(images)
    assert ours.shape == (shape[0], FID_FEATURES)
    assert expected.std() > 0.05  # features with a spread, so that a wrong pool or resize cannot pass
    diff = (ours - expected).abs().max().item()
    print(f"max abs diff vs pytorch-fid, {tuple(shape)}: {diff:.2e} (features' max {expected.abs().max():.2f})")
    assert diff <= 1e-4


def test_the_gan_extractor_feeds_grey_images_as_pytorch_fid_takes_rgb(weights_file, pytorch_fid_model):
    torch.manual_seed(2)
    grey = torch.rand(2, 1, 28, 28) * 2 - 1  # a GAN's tanh range, Fashion-MNIST's size
    extractor = feature_extractor(str(weights_file))
    assert isinstance(extractor, InceptionFeatures)
    with torch.no_grad():
        features, logits = extractor(grey)
    assert logits is None
    expected = _pytorch_fid_pool3(pytorch_fid_model, grey.expand(-1, 3, -1, -1))
    diff = (features - expected).abs().max().item()
    print(f"max abs diff vs pytorch-fid, grey (2, 1, 28, 28) through the gan extractor: {diff:.2e}")
    assert diff <= 1e-4


def test_a_wrong_file_is_an_error_naming_it_and_its_keys(tmp_path):
    from cvzoo.models.registry import create_model

    path = tmp_path / "resnet18.pth"
    torch.save(create_model("resnet18", num_classes=10).state_dict(), path)
    with pytest.raises(WeightsMismatchError, match=r"resnet18\.pth is not the FID Inception-v3's weights "
                       r"\(pytorch-fid's pt_inception-2015-12-05-6726825d\.pth\): .*missing: Conv2d_1a_3x3"):
        load_fid_inception(path)
    with pytest.raises(ConfigError, match=r"gan\.features takes a cvzoo classify checkpoint or pytorch-fid's "
                       r"Inception weights; .*resnet18\.pth is not the FID Inception-v3's weights .*unexpected: "):
        feature_extractor(str(path))
    with pytest.raises(ConfigError, match=r"gan\.features: cannot read .*absent\.pth"):
        feature_extractor(str(tmp_path / "absent.pth"))
