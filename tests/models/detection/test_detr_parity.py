"""DETR against transformers' ``DetrForObjectDetection`` with the same random weights (no download).

Their state dict, saved to a file, loads into ours through the ``transformers:detr`` remap that
``create_model(..., weights=)`` picks by itself; on the same normalised batch of two images of different
sizes (``pixel_values`` / ``pixel_mask``) the class logits and boxes agree within 1e-4, and for the same
targets (their ``labels=``) so does the loss. The reduced configuration (ResNet-18, 64 wide, 2 + 2 layers)
exists on both sides. The full-size ``detr_resnet50`` is compared by ``benchmarks/bench_detr.py latency``
(building both models costs ~7 s, over this file's share of the test time).

transformers' decoder differs from DETR's when its ``auxiliary_loss`` is on: it feeds each layer's
layer-normed output to the next layer (DETR normalises only the copy it predicts from), so its outputs then
change. The full-model loss is compared with the auxiliary losses off, and the auxiliary losses by giving
transformers' own loss function our per-layer predictions.
"""

from __future__ import annotations

import pytest
import torch

from cvzoo.models import create_model
from cvzoo.models.weights import load_weights

transformers = pytest.importorskip("transformers")
from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig  # noqa: E402
from transformers.loss.loss_for_object_detection import ForObjectDetectionLoss  # noqa: E402

NUM_CLASSES = 3
TINY = {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128,
        "encoder_attention_heads": 4, "decoder_attention_heads": 4, "num_queries": 20}
# Two images in one batch: 160x224 fills it, 128x160 sits top-left in the padding.
SIZES = [(160, 224), (128, 160)]


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random weights everywhere, frozen batch-norm statistics included (an identity norm hides layout errors)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
            elif name.endswith(("running_mean", "bias")):
                tensor.copy_(0.1 * noise)
            else:
                tensor.add_(0.02 * noise)


def _reference(seed: int = 0, **config) -> DetrForObjectDetection:
    torch.manual_seed(seed)
    model = DetrForObjectDetection(DetrConfig(num_labels=NUM_CLASSES, use_pretrained_backbone=False, **config))
    _perturb(model, seed)
    return model.eval()


def _ours(name: str, reference: DetrForObjectDetection, path, **kwargs):
    torch.save(reference.state_dict(), path)
    return create_model(name, num_classes=NUM_CLASSES, weights=str(path), **kwargs).eval()


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.zeros(2, 3, *SIZES[0])
    mask = torch.zeros(2, *SIZES[0], dtype=torch.long)
    for i, (h, w) in enumerate(SIZES):
        pixels[i, :, :h, :w] = torch.randn(3, h, w, generator=generator)
        mask[i, :h, :w] = 1
    return pixels, mask


def _labels() -> list[dict[str, torch.Tensor]]:
    """Normalised cxcywh targets: three objects in the first image, none in the second."""
    return [{"class_labels": torch.tensor([0, 2, 1]),
             "boxes": torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.7, 0.6, 0.3, 0.5], [0.5, 0.5, 0.9, 0.8]])},
            {"class_labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)}]


def _ours_targets(labels):
    return [{"labels": t["class_labels"], "boxes": t["boxes"]} for t in labels]


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    reference = _reference(backbone="resnet18", **TINY)
    ours = _ours("detr_resnet18_tiny", reference, tmp_path_factory.mktemp("detr") / "hf_tiny.pt", aux_loss=False)
    return reference, ours


def test_their_state_dict_loads_through_the_auto_remap(tiny_pair, tmp_path):
    reference, _ = tiny_pair
    path = tmp_path / "hf.pt"
    torch.save(reference.state_dict(), path)
    model = create_model("detr_resnet18_tiny", num_classes=NUM_CLASSES)
    report = load_weights(model, str(path))
    assert report.remap == "transformers:detr" and report.ok, report.summary()


def test_logits_and_boxes_equal_theirs_on_a_padded_batch(tiny_pair):
    reference, ours = tiny_pair
    pixels, mask = _inputs()
    with torch.no_grad():
        expected = reference(pixel_values=pixels, pixel_mask=mask)
        logits, boxes = ours.forward_network(pixels, mask.bool())
    torch.testing.assert_close(logits[-1], expected.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes[-1], expected.pred_boxes, rtol=0, atol=1e-4)
    # The mask matters: without it the padded image's tokens and positions move its predictions by more
    # than ten times the tolerance above (random weights make every query's output nearly alike).
    with torch.no_grad():
        unmasked, _ = ours.forward_network(pixels)
    assert (unmasked[-1][1] - logits[-1][1]).abs().max() > 1e-3


def test_loss_equals_theirs_for_the_same_targets(tiny_pair):
    reference, ours = tiny_pair
    pixels, mask = _inputs(1)
    labels = _labels()
    with torch.no_grad():
        expected = reference(pixel_values=pixels, pixel_mask=mask, labels=labels)
        logits, boxes = ours.forward_network(pixels, mask.bool())
        losses = ours.criterion(logits, boxes, _ours_targets(labels))
    torch.testing.assert_close(losses["loss"], expected.loss, rtol=0, atol=1e-4)
    for name in ("loss_ce", "loss_bbox", "loss_giou"):
        torch.testing.assert_close(losses[name], expected.loss_dict[name], rtol=0, atol=1e-4)


def test_auxiliary_losses_equal_their_loss_function_on_our_layers(tiny_pair):
    _, ours = tiny_pair
    pixels, mask = _inputs(2)
    labels = _labels()
    with torch.no_grad():
        logits, boxes = ours.forward_network(pixels, mask.bool(), all_layers=True)
        losses = ours.criterion(logits, boxes, _ours_targets(labels))
    config = DetrConfig(num_labels=NUM_CLASSES, auxiliary_loss=True, use_pretrained_backbone=False, **TINY)
    total, parts, _ = ForObjectDetectionLoss(logits[-1], labels, "cpu", boxes[-1], config, logits, boxes)
    assert logits.shape[0] == 2 and "loss_ce_0" in parts
    torch.testing.assert_close(losses["loss"], total, rtol=0, atol=1e-4)
    aux = parts["loss_ce_0"] + 5 * parts["loss_bbox_0"] + 2 * parts["loss_giou_0"]
    torch.testing.assert_close(losses["loss_aux"], aux, rtol=0, atol=1e-4)


def test_transformers_resnet_backbone_layout_loads_too(tmp_path):
    """``use_timm_backbone=False``: transformers' own ResNet (``embedder`` / ``encoder.stages``)."""
    backbone = ResNetConfig(layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512],
                            embedding_size=64, out_features=["stage4"])
    reference = _reference(seed=3, backbone_config=backbone, **TINY)
    ours = _ours("detr_resnet18_tiny", reference, tmp_path / "hf_resnet.pt")
    pixels, mask = _inputs(3)
    with torch.no_grad():
        expected = reference(pixel_values=pixels, pixel_mask=mask)
        logits, boxes = ours.forward_network(pixels, mask.bool())
    torch.testing.assert_close(logits[-1], expected.logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(boxes[-1], expected.pred_boxes, rtol=0, atol=1e-4)


def test_version_4_key_names_load_too(tiny_pair, tmp_path):
    """Files saved by transformers 4 (and the hub's): ``conv_encoder``, ``fc1`` / ``fc2``, ``out_proj``, the
    renamings transformers 5 itself applies when it loads them (``conversion_mapping.py``, ``DetrModel``)."""
    reference, ours = tiny_pair
    old = {}
    for key, value in reference.state_dict().items():
        key = key.replace("model.backbone.model.", "model.backbone.conv_encoder.model.")
        key = key.replace(".mlp.fc", ".fc").replace(".o_proj.", ".out_proj.")
        old[key] = value
    path = tmp_path / "hf_v4.pt"
    torch.save(old, path)
    model = create_model("detr_resnet18_tiny", num_classes=NUM_CLASSES, weights=str(path)).eval()
    for a, b in zip(model.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)

