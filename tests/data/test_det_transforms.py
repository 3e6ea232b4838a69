"""Hand-made cases for the box/mask-aware detection transforms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cvzoo.data.augment.detect import (
    Compose,
    LetterBox,
    MixUp,
    Mosaic,
    RandomAffine,
    RandomHorizontalFlip,
    RandomHSV,
    RandomIoUCrop,
    RandomVerticalFlip,
    RandomZoomOut,
    SampleError,
    V2Adapter,
    box_candidates,
    boxes_from_masks,
    check_sample,
    crop_sample,
    hflip,
    random_multiscale_size,
    scale_boxes_back,
    to_tensors,
    vflip,
    warp_sample,
)


def rect_sample(height: int, width: int, rects: list[tuple[int, int, int, int]], colours=None):
    """Black image with filled rectangles (xyxy, pixel-edge), their boxes, labels 0..N-1 and masks."""
    image = np.zeros((height, width, 3), np.uint8)
    masks = np.zeros((len(rects), height, width), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(rects):
        image[y1:y2, x1:x2] = colours[i] if colours is not None else 255
        masks[i, y1:y2, x1:x2] = 1
    target = {"boxes": np.array(rects, np.float32).reshape(-1, 4), "labels": np.arange(len(rects)),
              "masks": masks}
    return image, target


def coordinate_image(height: int, width: int) -> np.ndarray:
    """R = column, G = row: any crop tells where it came from."""
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx, yy, np.full_like(xx, 7)], axis=-1).astype(np.uint8)


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


# ------------------------------------------------------------------------------------------- flips
def test_hflip_maps_x_to_width_minus_x_and_matches_torchvision():
    image, target = rect_sample(40, 100, [(10, 5, 30, 25)])
    out, t = hflip(image, target)
    np.testing.assert_array_equal(t["boxes"], [[70, 5, 90, 25]])
    assert (out[5:25, 70:90] == 255).all() and out.sum() == image.sum()
    np.testing.assert_array_equal(boxes_from_masks(t["masks"])[0], t["boxes"])
    ref = TF.horizontal_flip(tv_tensors.BoundingBoxes(torch.tensor(target["boxes"]), format="XYXY",
                                                      canvas_size=(40, 100)))
    np.testing.assert_allclose(t["boxes"], ref.numpy())
    assert target["boxes"][0, 0] == 10  # input untouched


def test_vflip_and_random_flips_probability():
    image, target = rect_sample(50, 60, [(10, 5, 30, 25)])
    out, t = vflip(image, target)
    np.testing.assert_array_equal(t["boxes"], [[10, 25, 30, 45]])
    assert (out[25:45, 10:30] == 255).all()
    assert RandomVerticalFlip(p=0.0)(image, target)[1] is target
    np.testing.assert_array_equal(RandomHorizontalFlip(p=1.0)(image, target)[1]["boxes"], [[30, 5, 50, 25]])


# --------------------------------------------------------------------------------------- letterbox
def test_letterbox_100x50_to_64_maps_boxes_exactly_and_back():
    image, target = rect_sample(50, 100, [(10, 5, 60, 45)])
    out, t, ratio, pad = LetterBox(64).apply(image, target)
    assert out.shape == (64, 64, 3)
    assert ratio == (0.64, 0.64) and pad == (0, 16)
    assert (out[:16] == 114).all() and (out[48:] == 114).all() and (out[16:48] != 114).any()
    np.testing.assert_allclose(t["boxes"], [[6.4, 16 + 3.2, 38.4, 16 + 28.8]], atol=1e-5)
    assert t["masks"].shape == (1, 64, 64)
    np.testing.assert_allclose(scale_boxes_back(t["boxes"], ratio, pad, (50, 100)), target["boxes"], atol=1e-4)
    back = scale_boxes_back(torch.tensor(t["boxes"]), ratio, pad, (50, 100))
    np.testing.assert_allclose(back.numpy(), target["boxes"], atol=1e-4)
    # Predictions spilling into the padding are clipped to the original image.
    np.testing.assert_allclose(scale_boxes_back(np.float32([[-5, 0, 70, 64]]), 0.64, pad, (50, 100)),
                               [[0, 0, 100, 50]])


def test_letterbox_auto_pads_to_stride_only_and_no_scaleup():
    image = np.zeros((50, 100, 3), np.uint8)
    out, _, ratio, pad = LetterBox(64, stride=32, auto=True).apply(image)
    assert out.shape == (32, 64, 3) and pad == (0, 0)
    out, _, ratio, pad = LetterBox(256, scaleup=False).apply(image)
    assert ratio == (1.0, 1.0) and pad == (78, 103) and out.shape == (256, 256, 3)


# ------------------------------------------------------------------------------------------ affine
def test_pure_translation_moves_boxes_and_pixels_exactly():
    image, target = rect_sample(60, 80, [(10, 5, 30, 25), (40, 30, 70, 50)])
    out, t = warp_sample(image, target, translation(7, -3), fill=0)
    np.testing.assert_array_equal(t["boxes"], target["boxes"] + np.float32([7, -3, 7, -3]))
    np.testing.assert_array_equal(out[2:22, 17:37], 255)
    assert out.sum() == image.sum()
    no_masks = {k: v for k, v in target.items() if k != "masks"}
    np.testing.assert_array_equal(warp_sample(image, no_masks, translation(7, -3))[1]["boxes"], t["boxes"])


def test_random_affine_translation_only_shifts_every_box_by_the_drawn_offset():
    image, target = rect_sample(64, 64, [(10, 10, 20, 30), (30, 40, 50, 60)])
    target.pop("masks")
    probe = RandomAffine(degrees=0, translate=0.2, scale=0, shear=0, seed=3)
    matrix, scale = probe.get_matrix((64, 64), (64, 64))
    assert scale == 1 and np.allclose(matrix[:2, :2], np.eye(2))
    _, t = RandomAffine(degrees=0, translate=0.2, scale=0, shear=0, seed=3)(image, target)
    shift = matrix[:2, 2].astype(np.float32)
    np.testing.assert_allclose(t["boxes"], np.clip(target["boxes"] + np.tile(shift, 2), 0, 64), atol=1e-4)


def test_rotation_by_90_degrees_gives_the_expected_box():
    image, target = rect_sample(100, 100, [(10, 20, 30, 60)])
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D((50, 50), 90, 1.0)  # x' = y, y' = 100 - x
    expected = [[20, 70, 60, 90]]
    out, t = warp_sample(image, target, matrix, fill=0)
    np.testing.assert_array_equal(t["boxes"], expected)  # from the warped mask
    rows, cols = np.nonzero(out[..., 0] > 127)
    assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (20, 70, 60, 90)  # pixels agree
    no_masks = {k: v for k, v in target.items() if k != "masks"}
    np.testing.assert_allclose(warp_sample(image, no_masks, matrix)[1]["boxes"], expected, atol=1e-4)


def test_masks_stay_aligned_with_boxes_and_pixels_after_random_affine():
    rects = [(20, 30, 70, 60), (90, 20, 120, 110), (30, 80, 60, 120)]
    image, target = rect_sample(128, 128, rects)
    no_masks = {k: v for k, v in target.items() if k != "masks"}
    for seed in range(5):
        kwargs = dict(degrees=30, translate=0.1, scale=0.3, shear=5, perspective=0.0005, fill=0, seed=seed)
        out, t = RandomAffine(**kwargs)(image, target)
        _, t_corners = RandomAffine(**kwargs)(image, no_masks)
        assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"]) > 0
        tight, valid = boxes_from_masks(t["masks"])
        assert valid.all()
        np.testing.assert_allclose(t["boxes"], tight, atol=1)
        # The corner box of the same object encloses the mask's tight box.
        for box, label in zip(t["boxes"], t["labels"]):
            corner_box = t_corners["boxes"][list(t_corners["labels"]).index(label)]
            assert (corner_box[:2] <= box[:2] + 1).all() and (corner_box[2:] >= box[2:] - 1).all()
        # The warped masks cover the warped object pixels.
        union = t["masks"].any(axis=0)
        bright = out[..., 0] > 127
        assert (union & bright).sum() / (union | bright).sum() > 0.95


def test_degenerate_boxes_are_dropped_with_labels_and_masks():
    image, target = rect_sample(50, 50, [(2, 2, 10, 10), (30, 30, 45, 45)])
    target["iscrowd"] = np.array([False, True])
    _, t = warp_sample(image, target, translation(-9, 0))  # first box keeps 1 px of 8: dropped
    np.testing.assert_array_equal(t["labels"], [1])
    assert t["masks"].shape == (1, 50, 50) and t["iscrowd"].tolist() == [True]
    np.testing.assert_array_equal(t["boxes"], [[21, 30, 36, 45]])


def test_box_candidates_yolov5_rules():
    before = np.float32([[0, 0, 10, 10]] * 4)
    after = np.float32([[0, 0, 10, 10], [0, 0, 3, 3], [0, 0, 1.5, 10], [0, 0, 5, 2.5]])
    np.testing.assert_array_equal(box_candidates(before, after), [True, False, False, True])
    assert not box_candidates(np.float32([[0, 0, 400, 2.5]]), np.float32([[0, 0, 400, 3]]), ar_thr=100)[0]


# ------------------------------------------------------------------------------------------ colour
def test_hsv_keeps_shape_dtype_geometry_and_changes_colours():
    rng = np.random.default_rng(0)
    image = rng.integers(30, 220, (32, 48, 3), dtype=np.uint8)
    target = {"boxes": np.float32([[1, 2, 3, 4]]), "labels": np.array([0])}
    out, t = RandomHSV(h=0.1, s=0.7, v=0.4, seed=1)(image, target)
    assert out.shape == image.shape and out.dtype == np.uint8 and t is target
    assert np.abs(out.astype(int) - image).mean() > 3
    same, _ = RandomHSV(h=0, s=0, v=0)(image, target)
    np.testing.assert_array_equal(same, image)


# -------------------------------------------------------------------------------------- SSD crops
def test_crop_clips_and_drops_boxes():
    image, target = rect_sample(100, 100, [(10, 10, 40, 40), (60, 60, 90, 90), (5, 80, 15, 95)])
    out, t = crop_sample(image, target, 20, 20, 60, 50)
    assert out.shape == (50, 60, 3)
    np.testing.assert_array_equal(t["boxes"], [[0, 0, 20, 20], [40, 40, 60, 50]])
    np.testing.assert_array_equal(t["labels"], [0, 1])
    np.testing.assert_array_equal(boxes_from_masks(t["masks"])[0], t["boxes"])


def test_random_iou_crop_respects_centres_and_min_iou():
    image = coordinate_image(200, 200)
    rects = [(20, 20, 80, 90), (100, 30, 180, 100), (50, 120, 150, 190), (10, 150, 30, 170)]
    target = {"boxes": np.float32(rects), "labels": np.arange(4)}
    crop = RandomIoUCrop(options=(0.5,), seed=0)
    for _ in range(20):
        out, t = crop(image, target)
        left, top = int(out[0, 0, 0]), int(out[0, 0, 1])
        h, w = out.shape[:2]
        patch = np.float32([left, top, left + w, top + h])
        kept = target["boxes"][t["labels"]]
        centres = (kept[:, :2] + kept[:, 2:]) / 2
        assert ((centres >= patch[:2]) & (centres < patch[2:])).all()
        np.testing.assert_allclose(t["boxes"], np.clip(kept - np.tile(patch[:2], 2), 0, [w, h, w, h]))
        inter = np.clip(np.minimum(kept[:, 2:], patch[2:]) - np.maximum(kept[:, :2], patch[:2]), 0, None).prod(1)
        union = (kept[:, 2:] - kept[:, :2]).prod(1) + w * h - inter
        assert (inter / union).max() >= 0.5
    whole = RandomIoUCrop(options=(None,))(image, target)
    assert whole[0] is image


def test_random_zoom_out_keeps_boxes_on_their_pixels():
    image = coordinate_image(60, 80)
    image[..., 2] = 200
    target = {"boxes": np.float32([[10, 20, 30, 50]]), "labels": np.array([3]),
              "masks": np.zeros((1, 60, 80), np.uint8)}
    out, t = RandomZoomOut(fill=(1, 2, 3), side_range=(2.0, 3.0), p=1.0, seed=5)(image, target)
    assert 120 <= out.shape[0] <= 180 and 160 <= out.shape[1] <= 240
    x1, y1 = t["boxes"][0, :2].astype(int)
    assert tuple(out[y1, x1]) == (10, 20, 200)
    assert t["masks"].shape == (1, *out.shape[:2])
    assert (out[..., 2] == 200).sum() == 60 * 80 and (out[..., 2] == 3).sum() == out.shape[0] * out.shape[1] - 4800


# ---------------------------------------------------------------------------------- mosaic / mixup
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def _tile(i: int):
    image, target = rect_sample(100, 100, [(20 + 5 * i, 25, 70, 80 - 5 * i)], colours=[COLOURS[i]])
    image[image.sum(-1) == 0] = 60
    target["labels"] = np.array([i])
    return image, target


def test_mosaic_combine_puts_each_tile_in_its_quadrant():
    mosaic = Mosaic(_tile, 100, num_samples=4)
    canvas, t = mosaic.combine([_tile(i) for i in range(4)], (100, 100))
    for i, (r, c) in enumerate([(0, 0), (0, 100), (100, 0), (100, 100)]):
        np.testing.assert_array_equal(canvas[r:r + 100, c:c + 100], _tile(i)[0])
    np.testing.assert_array_equal(t["boxes"][3], _tile(3)[1]["boxes"][0] + 100)


@pytest.mark.parametrize("with_masks", [True, False])
def test_mosaic_keeps_each_box_on_its_objects_pixels(with_masks):
    def load(i):
        image, target = _tile(i)
        if not with_masks:
            target.pop("masks")
        return image, target

    identity = RandomAffine(degrees=0, translate=0, scale=0, shear=0)
    mosaic = Mosaic(load, 100, num_samples=4, affine=identity, seed=0)
    seen = 0
    for _ in range(10):
        out, t = mosaic(*load(0))
        assert out.shape == (100, 100, 3) and len(t["boxes"]) == len(t["labels"])
        for box, label in zip(t["boxes"], t["labels"]):
            x1, y1, x2, y2 = np.round(box).astype(int)
            np.testing.assert_array_equal(out[y1:y2, x1:x2].reshape(-1, 3), np.tile(COLOURS[label], ((y2 - y1) * (x2 - x1), 1)))
            seen += 1
        if with_masks:
            np.testing.assert_array_equal(boxes_from_masks(t["masks"])[0], t["boxes"])
    assert seen >= 10


def test_mosaic_without_mosaic_probability_letterboxes():
    mosaic = Mosaic(_tile, 64, p=0.0, num_samples=4, affine=RandomAffine(translate=0, scale=0))
    image, target = _tile(1)
    out, t = mosaic(image, target)
    assert out.shape == (64, 64, 3)
    np.testing.assert_allclose(t["boxes"], target["boxes"] * 0.64, atol=1)  # tight box of the resized mask
    target.pop("masks")
    np.testing.assert_allclose(mosaic(image, target)[1]["boxes"], target["boxes"] * 0.64, atol=1e-4)


def test_mixup_blends_images_and_concatenates_boxes():
    a, b = _tile(0), _tile(1)
    image, t = MixUp().mix(a, b, ratio=0.5)
    np.testing.assert_array_equal(t["boxes"], np.concatenate([a[1]["boxes"], b[1]["boxes"]]))
    np.testing.assert_array_equal(t["labels"], [0, 1])
    assert t["masks"].shape == (2, 100, 100)
    np.testing.assert_array_equal(image, ((a[0].astype(np.float32) + b[0]) / 2 + 0.5).astype(np.uint8))
    small = LetterBox(50)(*b)
    _, t = MixUp(seed=0).mix(a, small)
    np.testing.assert_allclose(t["boxes"][1], b[1]["boxes"][0], atol=1e-4)
    with pytest.raises(SampleError, match="masks"):
        MixUp().mix(a, (b[0], {"boxes": b[1]["boxes"], "labels": b[1]["labels"]}))
    out, t = MixUp(p=1.0, load_sample=_tile, num_samples=4, seed=1)(*a)
    assert len(t["boxes"]) == 2 and not np.array_equal(out, a[0])


# ----------------------------------------------------------------------------------------- others
def test_random_multiscale_size():
    rng = np.random.default_rng(0)
    sizes = {random_multiscale_size(640, rng=rng) for _ in range(200)}
    assert all(s % 32 == 0 and 320 <= s <= 960 for s in sizes) and len(sizes) > 10
    with pytest.raises(ValueError, match="stride"):
        random_multiscale_size(40, (0.9, 1.1), stride=32)


def test_check_sample_errors_name_the_key():
    image, target = rect_sample(20, 20, [(1, 1, 5, 5)])
    with pytest.raises(SampleError, match="uint8"):
        check_sample(image.astype(np.float32), target)
    with pytest.raises(SampleError, match="labels"):
        check_sample(image, {**target, "labels": np.arange(3)})
    with pytest.raises(SampleError, match="masks"):
        Compose([])(image, {**target, "masks": np.zeros((1, 10, 20), np.uint8)})


def test_seeded_pipelines_are_reproducible():
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    target = {"boxes": np.float32([[10, 10, 40, 40]]), "labels": np.array([0])}

    def pipeline(seed):
        return Compose([RandomAffine(degrees=10, seed=seed), RandomHSV(seed=seed + 1),
                        RandomHorizontalFlip(seed=seed + 2)])

    a, b, c = pipeline(0)(image, target), pipeline(0)(image, target), pipeline(5)(image, target)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    torch.manual_seed(1)
    d = RandomAffine(degrees=10)(image, target)
    torch.manual_seed(1)
    np.testing.assert_array_equal(RandomAffine(degrees=10)(image, target)[0], d[0])


def test_v2_adapter_runs_torchvision_transforms_and_sanitizes():
    image, target = rect_sample(60, 80, [(10, 5, 30, 25), (70, 40, 80, 60)])
    target["difficult"] = np.array([False, True])
    out, t = V2Adapter(v2.RandomHorizontalFlip(p=1.0))(image, target)
    ours = hflip(image, target)
    np.testing.assert_array_equal(out, ours[0])
    np.testing.assert_array_equal(t["boxes"], ours[1]["boxes"])
    np.testing.assert_array_equal(t["masks"], ours[1]["masks"])
    _, t = V2Adapter(v2.RandomCrop((60, 60)))(image, target)  # x offset 0..20: box 2 may vanish
    assert len(t["boxes"]) == len(t["labels"]) == len(t["masks"]) == len(t["difficult"])
    img_t, tgt_t = to_tensors(image, target)
    assert img_t.shape == (3, 60, 80) and tgt_t["boxes"].format == tv_tensors.BoundingBoxFormat.XYXY


class _SameSampleAugmented(torch.utils.data.Dataset):
    def __init__(self, transform):
        self.transform = transform
        self.image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        target = {"boxes": np.float32([[4, 4, 20, 20]]), "labels": np.array([0])}
        return torch.from_numpy(self.transform(self.image, target)[0])


def test_dataloader_workers_draw_different_streams():
    loader = torch.utils.data.DataLoader(_SameSampleAugmented(RandomHSV(h=0.2, s=0.5, v=0.3)), batch_size=1,
                                         num_workers=2, generator=torch.Generator().manual_seed(0))
    first, second = [batch[0] for batch in loader][:2]  # index 0 -> worker 0, index 1 -> worker 1
    assert not torch.equal(first, second)


def test_region_limited_mask_warp_equals_a_full_frame_warp():
    rng = np.random.default_rng(0)
    masks = np.zeros((3, 90, 120), np.uint8)
    rects = [(5, 5, 40, 50), (50, 20, 110, 60), (20, 60, 70, 88)]
    for mask, (x1, y1, x2, y2) in zip(masks, rects):
        mask[y1:y2, x1:x2] = rng.integers(0, 2, (y2 - y1, x2 - x1))
        mask[y1, x1] = mask[y2 - 1, x2 - 1] = 1  # keep the boxes tight
    target = {"boxes": np.float32(rects), "labels": np.arange(3), "masks": masks}
    image = np.zeros((90, 120, 3), np.uint8)
    matrix = np.eye(3)
    matrix[:2] = cv2.getRotationMatrix2D((60, 45), 23, 1.3)
    matrix[2, :2] = 1e-4, -2e-4
    _, t = warp_sample(image, target, matrix, out_size=(100, 110))
    to_cv = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1]])
    cv_matrix = to_cv @ matrix @ np.linalg.inv(to_cv)
    full = np.stack([cv2.warpPerspective(m, cv_matrix, (110, 100), flags=cv2.INTER_NEAREST) for m in masks])
    np.testing.assert_array_equal(t["masks"], full[t["labels"]])
    np.testing.assert_array_equal(t["boxes"], boxes_from_masks(full[t["labels"]])[0])
