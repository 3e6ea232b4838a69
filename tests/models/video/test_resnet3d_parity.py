"""The video ResNets against torchvision's: a torchvision state dict loads as it is and the eval outputs agree."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import video as tv_video

from cvzoo.layers.reparam import prepare_for_inference
from cvzoo.models import create_model, get_entry, list_models
from cvzoo.models.weights import load_weights
from tests.models.conftest import randomize_norm_stats

NAMES = ["r3d_18", "mc3_18", "r2plus1d_18"]


def test_registered_as_video_models():
    assert set(NAMES) <= set(list_models(task="video"))
    assert all(get_entry(name).reference == f"torchvision:{name}" for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_state_dict_gives_the_same_outputs(name, skip_init):
    torch.manual_seed(0)
    reference = randomize_norm_stats(getattr(tv_video, name)(num_classes=7), seed=1).eval()
    with skip_init():  # every tensor is overwritten by the load
        ours = create_model(name, num_classes=7).eval()
    report = load_weights(ours, reference.state_dict(), remap="auto")
    assert report.ok, report.summary()
    clip = torch.randn(2, 3, 2, 16, 16)  # T = 2 still runs every temporal stride (padded to one step)
    with torch.no_grad():
        expected, got = reference(clip), ours(clip)
    assert got.shape == (2, 7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # The stages' maps agree with the reference's feature_info (channels and spatial stride).
    with torch.no_grad():
        features = ours.forward_features(clip)
    assert [f.shape[1] for f in features] == [info.channels for info in ours.feature_info]
    assert [16 // f.shape[-1] for f in features] == [info.reduction for info in ours.feature_info]
    # What `cvzoo predict` does to a model first (BN folding, memory layout) keeps the outputs.
    with torch.no_grad():
        prepared = prepare_for_inference(ours, "cpu")(clip)
    torch.testing.assert_close(prepared, expected, atol=1e-5, rtol=1e-5)
