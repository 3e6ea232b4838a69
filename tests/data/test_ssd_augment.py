"""SSD's augmentation preset: the photometric distortion against torchvision's v2 RandomPhotometricDistort
(same draw -> same pixels), its probabilities, the IoU crop's and zoom out's draws against torchvision's
rules, and the preset wired into the detection dataset for images at their own size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from cvzoo.config.tasks import DetectAugment
from cvzoo.data.augment.detect import RandomIoUCrop, RandomPhotometricDistort, RandomZoomOut
from cvzoo.data.datasets.detection import SSD_ZOOM_FILL, DetectionDataset
from cvzoo.data.formats.yolo import read_yolo
from cvzoo.data.synthetic import SceneConfig, write_yolo_dataset


def _image(seed: int = 0, size: tuple[int, int] = (40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _target() -> dict[str, np.ndarray]:
    return {"boxes": np.float32([[4, 5, 30, 25], [20, 10, 50, 38]]), "labels": np.int64([0, 1])}


@pytest.mark.parametrize("contrast_before", [True, False])
def test_photometric_distortion_of_a_draw_is_torchvisions(contrast_before):
    image = _image()
    drawn = {"brightness": 1.1, "contrast": 0.7, "saturation": 1.3, "hue": -0.04, "contrast_before": contrast_before,
             "permutation": [2, 0, 1]}
    ours = RandomPhotometricDistort.distort(image, drawn)
    params = {"brightness_factor": 1.1, "contrast_factor": 0.7, "saturation_factor": 1.3, "hue_factor": -0.04,
              "contrast_before": contrast_before, "channel_permutation": torch.tensor([2, 0, 1])}
    reference = v2.RandomPhotometricDistort().transform(torch.from_numpy(image).permute(2, 0, 1), params)
    assert ours.dtype == np.uint8 and ours.shape == image.shape
    assert np.array_equal(ours, reference.permute(1, 2, 0).numpy())
    # Any subset of the distortions (None = skipped) is applied the same way.
    skipped = {**drawn, "saturation": None, "permutation": None}
    reference = v2.RandomPhotometricDistort().transform(
        torch.from_numpy(image).permute(2, 0, 1), {**params, "saturation_factor": None, "channel_permutation": None})
    assert np.array_equal(RandomPhotometricDistort.distort(image, skipped), reference.permute(1, 2, 0).numpy())


def test_photometric_draws_each_distortion_with_probability_p_and_leaves_boxes():
    distort = RandomPhotometricDistort(p=0.5, seed=0)
    draws = [distort.params() for _ in range(2000)]
    for key in ("brightness", "contrast", "saturation", "hue", "permutation"):
        share = np.mean([d[key] is not None for d in draws])
        assert 0.45 < share < 0.55, key
    assert all(0.875 <= d["brightness"] <= 1.125 for d in draws if d["brightness"] is not None)
    assert all(-0.05 <= d["hue"] <= 0.05 for d in draws if d["hue"] is not None)
    image, target = _image(), _target()
    out, out_target = distort(image, target)
    assert out_target is target and out.shape == image.shape
    never = RandomPhotometricDistort(p=0.0, seed=0)
    assert never(image, target)[0] is image
    with pytest.raises(ValueError, match="hue"):
        RandomPhotometricDistort(hue=(-0.6, 0.1))


def test_iou_crop_keeps_boxes_whose_centre_is_strictly_inside_and_p_skips():
    crop = RandomIoUCrop(seed=3)
    for seed in range(30):
        crop = RandomIoUCrop(seed=seed)
        image, target = crop(_image(seed), _target())
        height, width = image.shape[:2]
        assert (target["boxes"][:, 2:] <= [width, height]).all() and (target["boxes"] >= 0).all()
        assert 0.5 <= width / height <= 2.0 or (width, height) == (56, 40)
    never = RandomIoUCrop(seed=0, p=0.0)
    image = _image()
    assert never(image, _target())[0] is image


def test_zoom_out_fills_with_the_mean_and_keeps_boxes_on_their_pixels():
    zoom = RandomZoomOut(fill=SSD_ZOOM_FILL, p=1.0, seed=0)
    image, target = _image(), _target()
    out, out_target = zoom(image, target)
    assert out.shape[0] >= image.shape[0] and out.shape[1] >= image.shape[1]
    left, top = (out_target["boxes"][0, :2] - target["boxes"][0, :2]).astype(int)
    assert np.array_equal(out[top:top + 40, left:left + 56], image)
    if out.shape[:2] != image.shape[:2]:
        corner = out[0, 0] if (left, top) != (0, 0) else out[-1, -1]
        assert tuple(corner) == SSD_ZOOM_FILL


def test_dataset_applies_the_preset_to_images_at_their_own_size(tmp_path):
    scenes = SceneConfig(size_range=(48, 64), objects_per_image=(1, 2), scale_range=(0.3, 0.6), classes=["trouser", "bag"])
    data = write_yolo_dataset(tmp_path / "data", n_train=6, n_val=2, config=scenes, seed=0)
    annotations = read_yolo(data, "train")
    hyp = DetectAugment(mosaic=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, translate=0.0, affine_scale=0.0, zoom_out=1.0,
                        iou_crop=1.0, photometric=0.5)
    dataset = DetectionDataset(annotations, augment=True, hyp=hyp, letterbox=False)
    kinds = [type(t).__name__ for t in dataset.ssd_preset]
    assert kinds == ["RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop"]  # torchvision's "ssd" order
    torch.manual_seed(0)
    grown = 0
    for index in range(len(dataset)):
        image, target, meta = dataset[index]
        height, width = meta["input_size"]
        assert image.shape[-2:] == (height, width)
        assert ((target["boxes"][:, 2:] <= torch.tensor([width, height])) & (target["boxes"][:, :2] >= 0)).all()
        original = annotations.images[index]
        grown += height * width > original.height * original.width
    assert grown > 0, "zoom out (p=1) puts some images on larger canvases"
    # Without the keys (an R-CNN's recipe) nothing changes.
    plain = DetectionDataset(annotations, augment=True, hyp=DetectAugment(mosaic=0.0, translate=0.0), letterbox=False)
    assert plain.ssd_preset == []
    with pytest.raises(ValueError, match=r"detect\.augment\.zoom_out is SSD's"):
        DetectionDataset(annotations, augment=True, hyp=DetectAugment(zoom_out=0.5), letterbox=True)
