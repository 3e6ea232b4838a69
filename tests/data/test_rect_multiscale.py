"""Rectangular validation batches and multi-scale batch resizing (cvzoo.data.datasets.detection, cvzoo.data.augment.multiscale)."""

import numpy as np
import pytest
import torch

from cvzoo.data.augment.detect import LetterBox, scale_boxes_back
from cvzoo.data.augment.multiscale import multiscale_batch, resize_batch
from cvzoo.data.datasets.detection import DetectionDataset, collate_detection, rect_batch_shapes
from cvzoo.data.synthetic import SceneConfig, generate_dataset
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory):
    """Ten scenes of independent heights and widths in [40, 120], saved as PNG (lossless)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("rect")
    config = SceneConfig(size_range=(40, 120), objects_per_image=(1, 2), scale_range=(0.3, 0.5),
                         classes=["trouser", "bag"])
    images, annotations = generate_dataset(10, config, seed=4, split="val")
    for image, record in zip(images, annotations.images):
        Image.fromarray(image).save(root / record.file)
        record.file = str(root / record.file)
    return annotations


def test_rect_batch_shapes_worked_example():
    sizes = np.array([[300, 600], [480, 640], [640, 640], [640, 480], [600, 300]])  # (h, w), sorted by h/w
    # landscape pair -> (480, 640); square + portrait crosses 1 -> square; lone portrait -> (640, 320)
    assert rect_batch_shapes(sizes, 2, 640) == [(480, 640), (640, 640), (640, 320)]
    # 100 x 1000 at 640 wide needs 64 rows (a multiple of 32 already); 1 x 1000 still gets one stride
    assert rect_batch_shapes(np.array([[100, 1000]]), 4, 640) == [(64, 640)]
    assert rect_batch_shapes(np.array([[1, 1000]]), 4, 640) == [(32, 640)]


def test_rect_dataset_sorts_by_aspect_and_shapes_batches(mixed_sizes):
    dataset = DetectionDataset(mixed_sizes, 128, rect_batch_size=3)
    aspects = [record.height / record.width for record in dataset.images]
    assert aspects == sorted(aspects)
    assert sorted(r.file for r in dataset.images) == sorted(r.file for r in mixed_sizes.images)
    for start in range(0, len(dataset), 3):
        shapes = {tuple(dataset[i][0].shape[1:]) for i in range(start, min(start + 3, len(dataset)))}
        assert len(shapes) == 1  # one shape per batch
        height, width = shapes.pop()
        assert height % 32 == 0 and width % 32 == 0 and max(height, width) == 128
    # wide images first (fewer rows), tall ones last (fewer columns)
    assert dataset.shapes[0][0] < 128 and dataset.shapes[-1][1] < 128
    again = DetectionDataset(mixed_sizes, 128, rect_batch_size=3)
    assert [r.file for r in again.images] == [r.file for r in dataset.images]  # a fixed order


@pytest.mark.parametrize("img_size", [64, 128])  # 64: most images shrink; 128: only padded (no scale-up)
def test_rect_metadata_maps_ground_truth_back_exactly(mixed_sizes, img_size):
    dataset = DetectionDataset(mixed_sizes, img_size, rect_batch_size=3)
    for index in range(len(dataset)):
        image, target, meta = dataset[index]
        truth = dataset.original_targets(meta["index"])
        assert tuple(meta["orig_size"]) == (dataset.images[index].height, dataset.images[index].width)
        back = scale_boxes_back(target["boxes"], meta["ratio"], meta["pad"], meta["orig_size"])
        torch.testing.assert_close(back, torch.from_numpy(truth["boxes"]), atol=1e-3, rtol=0)
        assert target["labels"].tolist() == truth["labels"].tolist()


def test_letterbox_into_a_rect_shape_round_trip():
    image = np.zeros((50, 100, 3), np.uint8)
    box = np.float32([[10.5, 4, 60, 47.25]])
    out, target, ratio, pad = LetterBox((32, 64), scaleup=False).apply(image, {"boxes": box, "labels": np.int64([0])})
    assert out.shape[:2] == (32, 64)
    np.testing.assert_allclose(scale_boxes_back(target["boxes"], ratio, pad, (50, 100)), box, atol=1e-4)


def test_rect_off_keeps_square_letterbox(mixed_sizes):
    dataset = DetectionDataset(mixed_sizes, 64)
    assert dataset.shapes is None
    assert [r.file for r in dataset.images] == [r.file for r in mixed_sizes.images]
    assert {tuple(dataset[i][0].shape) for i in range(len(dataset))} == {(3, 64, 64)}


def test_rect_is_ignored_with_augmentation(mixed_sizes):
    from cvzoo.config import DetectAugment

    dataset = DetectionDataset(mixed_sizes, 64, augment=True, hyp=DetectAugment(mosaic=0.0), rect_batch_size=4)
    assert dataset.shapes is None


def test_image_size_falls_back_to_the_file_header(mixed_sizes):
    record = mixed_sizes.images[0]
    unsized = ImageAnnotation(file=record.file, width=0, height=0)
    dataset = DetectionDataset(DatasetAnnotations(class_names=["a"], images=[unsized, record]), 64,
                               rect_batch_size=1)
    expected = rect_batch_shapes(np.array([[record.height, record.width]]), 1, 64)[0]
    assert dataset.shapes == [expected, expected]


def test_collate_pads_mixed_shapes_bottom_right():
    a = torch.full((3, 32, 64), 7, dtype=torch.uint8)
    b = torch.full((3, 64, 32), 9, dtype=torch.uint8)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    images, targets, metas = collate_detection([(a, target, {"pad": (0, 3)}), (b, target, {"pad": (5, 0)})])
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8
    assert (images[0, :, :32] == 7).all() and (images[0, :, 32:] == 114).all()
    assert (images[1, :, :, :32] == 9).all() and (images[1, :, :, 32:] == 114).all()
    assert [m["pad"] for m in metas] == [(0, 3), (5, 0)]  # top-left anchored: metadata unchanged
    same, _, _ = collate_detection([(a, target, {}), (a, target, {})])
    assert same.shape == (2, 3, 32, 64)


def test_resize_batch_scales_boxes_per_axis():
    images = torch.rand(2, 3, 64, 96)
    targets = [{"boxes": torch.tensor([[8.0, 16, 48, 64]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    out, scaled = resize_batch(images, targets, (32, 144))
    assert out.shape == (2, 3, 32, 144)
    torch.testing.assert_close(scaled[0]["boxes"], torch.tensor([[12.0, 8, 72, 32]]))
    assert scaled[0]["labels"].tolist() == [1] and scaled[1]["boxes"].shape == (0, 4)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(images, size=(32, 144), mode="bilinear",
                                                                    align_corners=False))


def test_multiscale_sizes_are_stride_multiples_in_range_and_seeded():
    images = torch.rand(1, 3, 320, 320)
    target = [{"boxes": torch.tensor([[32.0, 64, 160, 320]]), "labels": torch.tensor([0])}]
    torch.manual_seed(3)
    sizes = []
    for _ in range(60):
        out, scaled = multiscale_batch(images, target, 320, stride=32)
        side = out.shape[-1]
        assert out.shape[-2] == side and side % 32 == 0 and 160 <= side <= 480
        torch.testing.assert_close(scaled[0]["boxes"], target[0]["boxes"] * side / 320)
        sizes.append(side)
    assert len(set(sizes)) > 5
    torch.manual_seed(3)
    assert [multiscale_batch(images, target, 320)[0].shape[-1] for _ in range(60)] == sizes
