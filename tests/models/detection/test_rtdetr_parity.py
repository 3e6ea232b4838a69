"""RT-DETR against transformers' ``RTDetrForObjectDetection`` with the same random weights (no download).

Their state dict, saved to a file, loads into ours through the ``transformers:rtdetr`` remap that
``create_model(..., weights=)`` picks by itself; on the same batch the last layer's class logits and boxes
agree within 1e-4, and for the same targets (their ``labels=``, eval mode: no denoising, the matching is
deterministic) so does the loss with its auxiliary terms (every decoder layer and the encoder's proposals).
The reduced configuration (ResNet-18-vd, 64 wide, 2 decoder layers, 128 x 128 images) exists on both sides;
the full-size models are compared by ``benchmarks/bench_rtdetr.py``.
"""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.weights import load_weights

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    RTDetrConfig,
    RTDetrForObjectDetection,
    RTDetrResNetConfig,
    RTDetrV2Config,
    RTDetrV2ForObjectDetection,
)

NUM_CLASSES = 3
SIZE = 128
# The tiny variant with RT-DETR's three RepVGG blocks per fusion block (transformers' number, not a setting).
OURS = {"num_blocks": 3, "size": SIZE}


def hf_config(config_class=RTDetrConfig, **overrides) -> RTDetrConfig:
    """transformers' configuration of ``rtdetr_r18vd_tiny``."""
    backbone = RTDetrResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                                  embedding_size=64, out_features=["stage2", "stage3", "stage4"])
    settings = {"num_labels": NUM_CLASSES, "backbone_config": backbone, "d_model": 64, "encoder_hidden_dim": 64,
                "encoder_in_channels": [128, 256, 512], "decoder_in_channels": [64, 64, 64], "encoder_ffn_dim": 128,
                "decoder_ffn_dim": 128, "encoder_attention_heads": 4, "decoder_attention_heads": 4,
                "decoder_layers": 2, "num_queries": 30, "num_denoising": 20, "hidden_expansion": 0.5, **overrides}
    return config_class(**settings)


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, batch-norm statistics included (an identity norm hides layout errors).
    Norm scales are drawn in [0.5, 1.5]: transformers starts the encoder's at ~N(0, 0.01), which leaves
    every token its bias alone and all queries alike (a comparison that could not see a wrong layout)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point() or name.endswith("n_points_scale"):
                continue  # RT-DETRv2's 1 / P per point is a constant of the layout, not a weight
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var") or (name.endswith("weight") and tensor.ndim == 1):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.1 * noise)
            else:
                tensor.add_(0.05 * noise)


def reference_model(seed: int = 0, **overrides) -> RTDetrForObjectDetection:
    torch.manual_seed(seed)
    model = RTDetrForObjectDetection(hf_config(**overrides))
    perturb(model, seed)
    return model.eval()


def labels() -> list[dict[str, torch.Tensor]]:
    """Normalised cxcywh targets: three objects in the first image, none in the second."""
    return [{"class_labels": torch.tensor([0, 2, 1]),
             "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.5], [0.5, 0.5, 0.9, 0.8]])},
            {"class_labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    reference = reference_model()
    path = tmp_path_factory.mktemp("rtdetr") / "hf_tiny.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model("rtdetr_r18vd_tiny", num_classes=NUM_CLASSES, weights=str(path), **OURS).eval()
    return reference, ours, path


def test_their_state_dict_loads_through_the_auto_remap(pair):
    _, _, path = pair
    model = create_model("rtdetr_r18vd_tiny", num_classes=NUM_CLASSES, **OURS)
    report = load_weights(model, str(path))
    assert report.remap == "transformers:rtdetr" and report.ok, report.summary()


def test_logits_and_boxes_equal_theirs(pair):
    reference, ours, _ = pair
    pixels = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference(pixel_values=pixels)
        out = ours.forward_network(pixels)
    torch.testing.assert_close(out["logits"][-1], expected.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(out["boxes"][-1], expected.pred_boxes, rtol=0, atol=1e-4)
    torch.testing.assert_close(out["enc_logits"], expected.enc_topk_logits, rtol=0, atol=1e-4)
    # Not a trivial agreement: the queries' scores and boxes differ from one another.
    assert expected.logits[0].std(0).min() > 1e-2 and expected.pred_boxes[0].std(0).min() > 1e-2


def test_loss_with_auxiliary_terms_equals_theirs(pair):
    reference, ours, _ = pair
    pixels = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = labels()
    with torch.no_grad():
        expected = reference(pixel_values=pixels, labels=targets)
        out = ours.forward_network(pixels)
        ours_targets = [{"labels": t["class_labels"], "boxes": t["boxes"]} for t in targets]
        losses = ours.criterion(out["logits"], out["boxes"], ours_targets, (out["enc_logits"], out["enc_boxes"]))
    torch.testing.assert_close(losses["loss"], expected.loss, rtol=0, atol=1e-4)
    weights = {"loss_vfl": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
    for name, weight in weights.items():
        torch.testing.assert_close(weight * losses[name], expected.loss_dict[name], rtol=0, atol=1e-4)
    aux = sum(v for k, v in expected.loss_dict.items() if "_aux_" in k)
    torch.testing.assert_close(losses["loss_aux"], aux, rtol=0, atol=1e-4)


def test_version_4_key_names_load_too(pair, tmp_path):
    """Files saved by transformers 4 (and the hub's): ``encoder.encoder``, ``fc1`` / ``fc2``, ``out_proj``
    (the renamings of transformers 5's ``conversion_mapping.py``) and the top-level copies of the heads."""
    reference, ours, _ = pair
    old = {}
    for key, value in reference.state_dict().items():
        key = key.replace("model.encoder.aifi.", "model.encoder.encoder.")
        key = key.replace(".mlp.fc", ".fc").replace(".o_proj.", ".out_proj.")
        old[key] = value
        if key.startswith("model.decoder.class_embed.") or key.startswith("model.decoder.bbox_embed."):
            old[key[len("model.decoder."):]] = value
    path = tmp_path / "hf_v4.pt"
    torch.save(old, path)
    model = create_model("rtdetr_r18vd_tiny", num_classes=NUM_CLASSES, weights=str(path), **OURS).eval()
    for (name, a), b in zip(model.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_rtdetr_v2_with_discrete_sampling_equals_theirs(tmp_path):
    """RT-DETRv2's sampling settings against ``RTDetrV2ForObjectDetection``: one-cell ("discrete") sampling
    and an offset scale other than RT-DETR's 0.5; its state dict (top-level head copies, the per-point scale
    buffer) loads into the same model through the same remap (RT-DETRv2 keeps RT-DETR's network)."""
    torch.manual_seed(4)
    reference = RTDetrV2ForObjectDetection(hf_config(RTDetrV2Config, decoder_method="discrete",
                                                     decoder_offset_scale=0.7))
    perturb(reference, 4)
    reference.eval()
    path = tmp_path / "hf_v2.pt"
    torch.save(reference.state_dict(), path)
    ours = create_model("rtdetr_r18vd_tiny", num_classes=NUM_CLASSES, weights=str(path), sampling="discrete",
                        offset_scale=0.7, **OURS).eval()
    pixels = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference(pixel_values=pixels)
        out = ours.forward_network(pixels)
    torch.testing.assert_close(out["logits"][-1], expected.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(out["boxes"][-1], expected.pred_boxes, rtol=0, atol=1e-4)
