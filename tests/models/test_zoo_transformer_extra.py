"""Hand-checked pieces and documented behaviours of ViT, Swin, ConvNeXt and MobileViT.

The reference comparisons live in test_zoo_transformer_parity.py and the generic contract in
test_contract.py; here: position-embedding interpolation, window masks and indices, padding and
no-shift rules, layer scale, unfold/fold, error paths and export.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from cvzoo.layers.attention_blocks import MultiHeadSelfAttention
from cvzoo.layers.drop_path import DropPath
from cvzoo.layers.layer_norm import LayerNorm2d
from cvzoo.layers.patch_embed import PatchEmbed
from cvzoo.models import create_model, get_entry
from cvzoo.models.classification.convnext import ConvNeXtBlock
from cvzoo.models.classification.mobilevit import MobileViTBlock
from cvzoo.models.classification.swin import (
    MASKED_SCORE,
    SwinTransformer,
    WindowAttention,
    relative_position_index,
    shifted_window_mask,
    window_merge,
    window_partition,
)
from cvzoo.models.classification.vit import VisionTransformer, resize_position_embedding


def _small_vit_b16(**kwargs) -> VisionTransformer:
    """vit_b_16's patch size, width and 224 px position grid, with 2 blocks instead of 12."""
    torch.manual_seed(0)
    return create_model("vit_b_16", depth=2, num_classes=10, **kwargs)


# ----------------------------------------------------------------------------------------------- ViT


@pytest.mark.parametrize("size", [32, 64])
def test_vit_interpolates_position_embeddings_at_other_sizes(size):
    model = _small_vit_b16().train()
    nn.init.normal_(model.head.weight, std=0.02)  # a zero head (ViT's init) would block every gradient
    grid = size // 16
    x = torch.randn(2, 3, size, size)
    features = model.forward_features(x)
    assert features[0].shape == (2, 768, grid, grid)
    assert model.position_embedding((grid, grid)).shape == (1, 1 + grid * grid, 768)
    out = model.forward_head(features)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.pow(2).sum().backward()
    # The 14x14 grid of learnt embeddings receives the gradient through the interpolation.
    assert model.pos_embed.grad is not None and model.pos_embed.grad[0, 1:].abs().sum() > 0


def test_vit_position_embedding_native_size_and_interpolation_properties():
    model = _small_vit_b16()
    assert model.position_embedding((14, 14)) is model.pos_embed  # training size: used as is
    resized = model.position_embedding((4, 6))  # non-square inputs work too
    assert resized.shape == (1, 1 + 24, 768)
    torch.testing.assert_close(resized[:, :1], model.pos_embed[:, :1])  # class token's embedding kept

    constant = torch.full((1, 9, 5), 0.25)  # a constant grid stays constant under bicubic resizing
    torch.testing.assert_close(resize_position_embedding(constant, (5, 2)), torch.full((1, 10, 5), 0.25))
    with pytest.raises(ValueError, match="square grid"):
        resize_position_embedding(torch.zeros(1, 8, 5), (2, 2))


def test_vit_tiny_trains_on_fashion_mnist_sized_images():
    torch.manual_seed(0)
    model = create_model("vit_tiny_patch4_32", num_classes=10, in_channels=1)
    nn.init.normal_(model.head.weight, std=0.02)  # as after a first step from the zero-initialised head
    assert get_entry("vit_tiny_patch4_32").input_size == (3, 32, 32)
    logits = model(torch.randn(2, 1, 28, 28))  # 7x7 grid, embeddings interpolated from 8x8
    loss = nn.functional.cross_entropy(logits, torch.tensor([3, 7]))
    loss.backward()
    assert torch.isfinite(loss) and model.patch_embed.proj.weight.grad.abs().sum() > 0


def test_vit_errors():
    model = VisionTransformer(image_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, num_classes=3)
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="image_size 30 is not divisible"):
        VisionTransformer(image_size=30, patch_size=4)
    features = model.forward_features(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="class token"):
        model.forward_head([features[0]])  # a plain list has no class token
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MultiHeadSelfAttention(10, 3)


def test_patch_embed_floors_when_not_strict():
    embed = PatchEmbed(3, 8, 4, norm_layer=nn.LayerNorm, strict=False)
    assert embed(torch.randn(1, 3, 61, 47)).shape == (1, 15, 11, 8)  # channels last
    with pytest.raises(ValueError, match="smaller than one 4px patch"):
        embed(torch.randn(1, 3, 3, 8))


# ---------------------------------------------------------------------------------------------- Swin


def test_relative_position_index_by_hand():
    # Window 2: positions (0,0) (0,1) (1,0) (1,1); index = (dy + 1) * 3 + (dx + 1).
    expected = torch.tensor([[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]])
    assert torch.equal(relative_position_index(2), expected)
    assert relative_position_index(7).max() == 13 * 13 - 1


def test_shifted_window_mask_by_hand():
    # 4x4 map, 2x2 windows, rolled by (1, 1): row regions [0, 0, 1, 2], column regions [0, 0, 1, 2].
    mask = shifted_window_mask(4, 4, 2, (1, 1), torch.device("cpu"))
    assert mask.shape == (4, 1, 4, 4)
    allowed = mask[:, 0] == 0
    assert allowed[0].all()  # top-left window: one region
    # Top-right window, tokens (0,2) (0,3) (1,2) (1,3): column regions 1, 2, 1, 2.
    assert torch.equal(allowed[1], torch.tensor([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]).bool())
    assert torch.equal(allowed[3], torch.eye(4, dtype=torch.bool))  # bottom-right: four regions
    assert set(mask.unique().tolist()) == {0.0, MASKED_SCORE}
    # Shifted along the width only: rows form one region.
    width_only = shifted_window_mask(4, 4, 2, (0, 1), torch.device("cpu"))[:, 0] == 0
    assert width_only[2].all() and torch.equal(width_only[3], allowed[1])


def test_window_partition_round_trip():
    x = torch.arange(2 * 6 * 4 * 3, dtype=torch.float32).reshape(2, 6, 4, 3)
    windows = window_partition(x, 2)
    assert windows.shape == (2, 6, 4, 3)
    torch.testing.assert_close(windows[0, 1], x[0, 0:2, 2:4].reshape(4, 3))  # second window of row 0
    torch.testing.assert_close(window_merge(windows, 2, 6, 4), x)


def test_window_larger_than_map_is_not_shifted():
    torch.manual_seed(0)
    plain = WindowAttention(16, 2, window_size=7, shift_size=0).eval()
    shifted = WindowAttention(16, 2, window_size=7, shift_size=3).eval()
    shifted.load_state_dict(plain.state_dict())
    small = torch.randn(2, 5, 6, 16)  # padded to a single 7x7 window
    torch.testing.assert_close(shifted(small), plain(small))
    large = torch.randn(2, 9, 9, 16)  # padded to 14x14: four windows, the shift applies
    assert not torch.allclose(shifted(large), plain(large))
    with pytest.raises(ValueError, match="shift_size"):
        WindowAttention(16, 2, window_size=7, shift_size=7)


def test_swin_features_for_sizes_that_do_not_divide():
    model = SwinTransformer(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), num_classes=3).eval()
    features = model.forward_features(torch.randn(1, 3, 61, 47))
    # 61x47 -> 15x11 patches (borders dropped), then merging pads odd sides: 8x6, 4x3, 2x2.
    assert [tuple(f.shape[1:]) for f in features] == [(8, 15, 11), (16, 8, 6), (32, 4, 3), (64, 2, 2)]
    assert [info.reduction for info in model.feature_info] == [4, 8, 16, 32]


def test_stochastic_depth_schedules_match_torchvision():
    with torch.device("meta"):
        swin = create_model("swin_t")
        convnext = create_model("convnext_tiny")
    swin_paths = [block.drop_path for stage in swin.stages for block in stage.blocks]
    assert isinstance(swin_paths[0], nn.Identity) and swin_paths[-1].drop_prob == pytest.approx(0.2)
    assert swin_paths[1].drop_prob == pytest.approx(0.2 / 11)
    convnext_paths = [block.drop_path for stage in convnext.stages for block in stage.blocks]
    assert isinstance(convnext_paths[-1], DropPath) and convnext_paths[-1].drop_prob == pytest.approx(0.1)


# ------------------------------------------------------------------------------------------ ConvNeXt


def test_layer_norm_2d_is_layer_norm_over_channels():
    torch.manual_seed(0)
    norm = LayerNorm2d(6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    reference = nn.LayerNorm(6, eps=1e-6)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 6, 5, 4) * 3 + 1
    torch.testing.assert_close(norm(x), reference(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        norm(torch.randn(2, 6, 5))


def test_convnext_block_starts_near_identity():
    torch.manual_seed(0)
    block = ConvNeXtBlock(16).eval()
    assert torch.equal(block.gamma, torch.full((16,), 1e-6))
    x = torch.randn(2, 16, 8, 8)
    assert (block(x) - x).abs().max() < 1e-4
    assert ConvNeXtBlock(16, layer_scale_init=0).gamma is None


# ----------------------------------------------------------------------------------------- MobileViT


def test_mobilevit_unfold_groups_the_same_pixel_of_every_patch():
    block = MobileViTBlock(channels=4, transformer_dim=8, depth=1)
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    tokens = block.unfold(x)  # [B, P=4, N=4, d=1]
    assert tokens.shape == (1, 4, 4, 1)
    assert tokens[0, 0, :, 0].tolist() == [0, 2, 8, 10]  # top-left pixel of the four 2x2 patches
    assert tokens[0, 1, :, 0].tolist() == [1, 3, 9, 11]  # top-right pixel
    y = torch.randn(2, 8, 6, 10)
    torch.testing.assert_close(block.fold(block.unfold(y), 6, 10), y)


def test_mobilevit_feature_info():
    with torch.device("meta"):
        model = create_model("mobilevit_xxs")
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (16, 2), (24, 4), (48, 8), (64, 16), (320, 32)
    ]
    assert get_entry("mobilevit_xxs").input_size == (3, 256, 256)


# -------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    ("build", "size"),
    [
        (lambda: VisionTransformer(image_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, num_classes=5), 24),
        (lambda: SwinTransformer(embed_dim=16, depths=(2, 2), num_heads=(1, 2), num_classes=5), 61),
    ],
    ids=["vit_interpolated", "swin_shifted_padded"],
)
def test_export_trace_and_onnx(build, size):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build().eval()
    nn.init.normal_(model.head.weight)  # ViT zero-initialises its head
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected)
    assert expected.abs().max() > 0.01
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}}, dynamo=False,
    )
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-4)
