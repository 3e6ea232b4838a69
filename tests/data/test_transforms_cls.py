"""Classification transform presets, the batch augmentation path and Mixup/CutMix."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from cvzoo.data.augment.classify import (
    BatchPadCropFlip,
    CutMix,
    Mixup,
    MixupCutmix,
    SmallImageTransform,
    classification_eval_transform,
    classification_train_transform,
    smooth_one_hot,
)

MEAN, STD = (0.2860,), (0.3530,)


def _grey(seed=0, size=28) -> torch.Tensor:
    return torch.randint(0, 256, (1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _normalized(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)
    return (x.float() / 255 - m) / s


def _all_crops(image: torch.Tensor, pad: int, size: int, flips=(False, True)) -> list[torch.Tensor]:
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    crops = []
    for top in range(padded.shape[-2] - size + 1):
        for left in range(padded.shape[-1] - size + 1):
            crop = padded[..., top : top + size, left : left + size]
            crops.extend(crop.flip(-1) if f else crop for f in flips)
    return crops


def test_small_image_rule_selects_pad_crop_preset():
    tf = classification_train_transform(28, MEAN, STD, channels=1)
    assert isinstance(tf, SmallImageTransform) and tf.padding == 4
    assert isinstance(classification_train_transform(32, channels=3), SmallImageTransform)
    assert isinstance(classification_train_transform(96), v2.Compose)
    assert isinstance(classification_train_transform(28, MEAN, STD, 1, small_image=False), v2.Compose)
    with_extras = classification_train_transform(28, MEAN, STD, 1, color_jitter=0.2)
    assert isinstance(with_extras, v2.Compose)
    assert any(isinstance(t, v2.RandomCrop) for t in with_extras.transforms)


def test_small_train_output_is_a_padded_crop():
    image = _grey()
    torch.manual_seed(0)
    tf = classification_train_transform(28, MEAN, STD, channels=1, hflip=0.5)
    candidates = [_normalized(c) for c in _all_crops(image, 4, 28)]
    seen = set()
    for _ in range(20):
        out = tf(image)
        assert out.shape == (1, 28, 28) and out.dtype == torch.float32
        matches = [i for i, c in enumerate(candidates) if torch.allclose(out, c, atol=1e-6)]
        assert matches
        seen.add(matches[0])
    assert len(seen) > 5  # it is random


def test_small_eval_matches_the_v2_pipeline_and_resizes():
    image = torch.randint(0, 256, (1, 40, 36), dtype=torch.uint8)
    ref = v2.Compose([v2.Resize(28, antialias=True), v2.CenterCrop(28), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(MEAN, STD)])
    ours = classification_eval_transform(28, MEAN, STD, channels=1)
    assert torch.allclose(ours(image), ref(image), atol=1e-6)
    assert torch.allclose(ours(image[0]), ref(image), atol=1e-6)  # [H, W] tensors are grey images


def test_grey_to_three_channels_and_rgb_to_grey():
    image = _grey(1)
    out = classification_eval_transform(28, MEAN, STD, channels=3)(image)
    assert out.shape == (3, 28, 28)
    assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    assert torch.allclose(out[0], _normalized(image)[0], atol=1e-6)
    # With 3-value statistics the grey image is repeated first and normalised per channel.
    out3 = classification_eval_transform(28, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5), channels=3)(image)
    assert torch.allclose(out3[2], _normalized(image, (0.3,), (0.5,))[0], atol=1e-6)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8))
    grey = classification_eval_transform(28, (0.0,), (1.0,), channels=1)(rgb)
    expected = torch.from_numpy(np.array(rgb.convert("L"))).float() / 255
    assert grey.shape == (1, 28, 28) and (grey[0] - expected).abs().max() <= 1.5 / 255


def test_pil_and_tensor_inputs_agree():
    array = np.random.default_rng(2).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    tf = classification_eval_transform(28, channels=3)
    assert torch.allclose(tf(Image.fromarray(array)), tf(torch.from_numpy(array).permute(2, 0, 1)))


def test_large_presets_shapes_and_centre_crop():
    image = torch.randint(0, 256, (3, 80, 100), dtype=torch.uint8)
    train = classification_train_transform(96, auto_augment="randaugment", color_jitter=0.3, random_erasing=0.5)
    assert train(image).shape == (3, 96, 96)
    # floor(224 / 0.875) = 256: a 256x256 input is only centre-cropped, pixels unchanged.
    big = torch.randint(0, 256, (3, 256, 256), dtype=torch.uint8)
    out = classification_eval_transform(224, (0, 0, 0), (1, 1, 1), crop_pct=0.875)(big)
    assert torch.allclose(out, big[:, 16:240, 16:240].float() / 255)


def test_randaugment_on_grey_and_bad_arguments():
    tf = classification_train_transform(28, MEAN, STD, channels=1, auto_augment="randaugment")
    assert tf(_grey()).shape == (1, 28, 28)
    with pytest.raises(ValueError, match="auto_augment"):
        classification_train_transform(28, MEAN, STD, 1, auto_augment="augmix")
    with pytest.raises(ValueError, match="mean/std"):
        classification_eval_transform(28, (0.1, 0.2, 0.3), (1, 1, 1), channels=1)
    with pytest.raises(ValueError, match="interpolation"):
        classification_eval_transform(224, interpolation="lanczos9")
    with pytest.raises(ValueError, match="uint8"):
        classification_eval_transform(28, MEAN, STD, 1)(torch.rand(1, 28, 28))


def test_batch_pad_crop_flip_matches_per_sample_crops():
    images = torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    out = BatchPadCropFlip(padding=2, hflip=0.5, mean=MEAN, std=STD, channels=3, generator=gen)(images)
    assert out.shape == (6, 3, 12, 12) and out.dtype == torch.float32
    flipped = 0
    for i in range(6):
        crops = _all_crops(images[i], 2, 12)
        hits = [k for k, c in enumerate(crops) if torch.allclose(out[i, 0], _normalized(c)[0], atol=1e-5)]
        assert hits
        flipped += hits[0] % 2
    assert 0 < flipped < 6  # seeded: some samples flipped, some not
    assert torch.equal(out[:, 0], out[:, 2])
    again = BatchPadCropFlip(2, 0.5, MEAN, STD, 3, generator=torch.Generator().manual_seed(0))(images)
    assert torch.equal(out, again)
    plain = BatchPadCropFlip(padding=0, hflip=0.0, mean=MEAN, std=STD, channels=1)(images)
    assert torch.allclose(plain, _normalized(images), atol=1e-5)
    always = BatchPadCropFlip(padding=0, hflip=1.0, mean=MEAN, std=STD, channels=1)(images)
    assert torch.allclose(always, _normalized(images).flip(-1), atol=1e-5)


def test_smooth_one_hot():
    t = smooth_one_hot(torch.tensor([2, 0]), 4, 0.1)
    assert torch.allclose(t, torch.tensor([[0.025, 0.025, 0.925, 0.025], [0.925, 0.025, 0.025, 0.025]]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        smooth_one_hot(torch.tensor([4]), 4)


def _batch():
    gen = torch.Generator().manual_seed(1)
    return torch.rand(4, 3, 16, 16, generator=gen), torch.tensor([0, 1, 2, 3])


def test_mixup_mixes_images_and_targets_with_the_same_lambda():
    images, labels = _batch()
    mixed, targets = Mixup(5, alpha=0.4, generator=torch.Generator().manual_seed(0))(images, labels)
    lam = targets[0, 0].item()
    assert 0 < lam < 1 and targets[0, 3].item() == pytest.approx(1 - lam)
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0), atol=1e-6)
    assert torch.allclose(targets.sum(1), torch.ones(4))


def test_cutmix_targets_match_pasted_area():
    images, labels = _batch()
    for seed in range(5):
        mixed, targets = CutMix(4, alpha=1.0, generator=torch.Generator().manual_seed(seed))(images, labels)
        from_partner = (mixed != images).any(dim=1)[0].float().mean().item()
        assert torch.all((mixed == images) | (mixed == images.flip(0)))
        assert targets[0, 3].item() == pytest.approx(from_partner, abs=1e-6)
        assert targets[0, 0].item() == pytest.approx(1 - from_partner, abs=1e-6)


def test_mixup_cutmix_switch_smoothing_and_prob():
    images, labels = _batch()
    gen = torch.Generator().manual_seed(0)
    cut = MixupCutmix(4, mixup_alpha=0.8, cutmix_alpha=1.0, switch_prob=1.0, label_smoothing=0.1, generator=gen)
    mixed, targets = cut(images, labels)
    assert torch.all((mixed == images) | (mixed == images.flip(0)))  # CutMix chosen
    assert targets.min().item() == pytest.approx(0.025) and torch.allclose(targets.sum(1), torch.ones(4))
    mix = MixupCutmix(4, switch_prob=0.0, generator=torch.Generator().manual_seed(0))
    mixed, _ = mix(images, labels)
    assert not torch.all((mixed == images) | (mixed == images.flip(0)))  # Mixup chosen
    off = MixupCutmix(4, prob=0.0, label_smoothing=0.2)
    same, targets = off(images, labels)
    assert torch.equal(same, images) and torch.allclose(targets, smooth_one_hot(labels, 4, 0.2))
    with pytest.raises(ValueError, match="mixup_alpha"):
        MixupCutmix(4, mixup_alpha=0.0, cutmix_alpha=0.0)
    with pytest.raises(ValueError, match="labels"):
        MixupCutmix(4)(images, labels[:2])
