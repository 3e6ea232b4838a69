"""Batched augmentations (cvzoo.data.augment.batch) against per-image references: torchvision's affine,
OpenCV's remap / GaussianBlur / dilate."""

import cv2
import numpy as np
import pytest
import torch

from cvzoo.data.augment.batch import (
    affine_warp,
    elastic_warp,
    gaussian_blur,
    random_affine,
    random_dilate,
    random_elastic,
)


def test_batched_affine_warp_matches_torchvision_per_image():
    from torchvision.transforms.v2 import functional as TF

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 12, 12, generator=generator)
    angle, shear, zoom = torch.tensor([0.0, 30.0, -90.0]), torch.tensor([20.0, -15.0, 10.0]), torch.tensor([1.0, 0.9, 1.2])
    fill = torch.tensor([-0.5, 0.25])
    warped = affine_warp(images, angle, shear, zoom, fill)
    for i in range(3):
        reference = TF.affine(images[i] - fill[:, None, None], angle=-float(angle[i]), translate=[0, 0],
                              scale=float(zoom[i]), shear=[float(shear[i]), 0.0],
                              interpolation=TF.InterpolationMode.BILINEAR) + fill[:, None, None]
        torch.testing.assert_close(warped[i], reference, atol=1e-5, rtol=0)
    # Rotation is counter-clockwise like torchvision's rotate; nothing to do leaves the batch as it is.
    torch.testing.assert_close(affine_warp(images, torch.full((3,), 90.0), torch.zeros(3), torch.ones(3), fill),
                               torch.rot90(images, 1, (2, 3)), atol=1e-5, rtol=0)
    torch.testing.assert_close(random_affine(images, 0.0, 0.0, 0.0, fill), images, atol=1e-6, rtol=0)
    # A black image stays black whatever the warp (the fill is the normalised black).
    black = fill.view(1, 2, 1, 1).expand(4, 2, 12, 12)
    torch.testing.assert_close(random_affine(black, 30.0, 20.0, 0.3, fill), black, atol=1e-6, rtol=0)


def test_elastic_warp_matches_opencv_remap():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(2, 1, 20, 16, generator=generator, dtype=torch.float64)
    displacement = (torch.rand(2, 2, 20, 16, generator=generator, dtype=torch.float64) * 2 - 1) * 3
    fill = torch.tensor([-0.4], dtype=torch.float64)
    warped = elastic_warp(images, displacement, fill)
    ys, xs = np.mgrid[0:20, 0:16].astype(np.float32)
    for i in range(2):
        dx, dy = displacement[i].numpy().astype(np.float32)
        reference = cv2.remap(images[i, 0].numpy().astype(np.float32), xs + dx, ys + dy, cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=-0.4)
        # OpenCV's bilinear weights are fixed point (1/32 of a pixel): agreement to ~1e-2, not 1e-6.
        np.testing.assert_allclose(warped[i, 0].numpy(), reference, atol=2e-2)
    # An integer shift is exact: every pixel moves one to the left, the last column is fill.
    shift = torch.zeros(2, 2, 20, 16, dtype=torch.float64)
    shift[:, 0] = 1.0
    moved = elastic_warp(images, shift, fill)
    torch.testing.assert_close(moved[..., :-1], images[..., 1:])
    torch.testing.assert_close(moved[..., -1], torch.full_like(moved[..., -1], -0.4))


@pytest.mark.parametrize("sigma", [0.8, 2.0, 4.0])
def test_gaussian_blur_matches_opencv(sigma):
    image = np.random.default_rng(0).random((28, 24))
    radius = int(np.ceil(3 * sigma))
    reference = cv2.GaussianBlur(image, (2 * radius + 1, 2 * radius + 1), sigmaX=sigma, sigmaY=sigma,
                                 borderType=cv2.BORDER_REFLECT_101)
    ours = gaussian_blur(torch.from_numpy(image)[None, None], sigma)[0, 0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-12)


def test_random_elastic_is_a_smooth_small_wobble_and_keeps_black_black():
    torch.manual_seed(0)
    fill = torch.tensor([-0.5])
    images = torch.rand(8, 1, 28, 28)
    assert random_elastic(images, 0.0, 4.0, fill) is images
    # Simard's alpha=34, sigma=4: about 1.5 px average displacement, the digit is moved but not destroyed.
    noise = gaussian_blur(torch.rand(64, 2, 28, 28) * 2 - 1, 4.0) * 34
    assert 0.8 < noise.abs().mean().item() < 2.5
    warped = random_elastic(images, 34.0, 4.0, fill)
    assert warped.shape == images.shape and not torch.equal(warped, images)
    black = torch.full((4, 1, 28, 28), -0.5)
    torch.testing.assert_close(random_elastic(black, 34.0, 4.0, fill), black)


def test_random_dilate_is_opencv_dilate_on_the_chosen_images():
    torch.manual_seed(0)
    images = torch.rand(6, 1, 15, 15)
    widened = random_dilate(images, 1.0)
    for i in range(6):
        reference = cv2.dilate(images[i, 0].numpy(), np.ones((3, 3), np.uint8))  # border: ignored pixels
        np.testing.assert_array_equal(widened[i, 0].numpy(), reference)
    assert torch.equal(random_dilate(images, 0.0), images)
    mixed = random_dilate(images, 0.5)
    kept = [torch.equal(mixed[i], images[i]) for i in range(6)]
    assert all(kept[i] or torch.equal(mixed[i], widened[i]) for i in range(6))
    with pytest.raises(ValueError, match="odd"):
        random_dilate(images, 1.0, size=2)
