"""Image sizes in detection data: an annotation whose width/height disagree with the file is reported
(never silently rescaled), and EXIF-rotated photos have the size training decodes them at."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvzoo.data.check import check_dataset
from cvzoo.data.datasets.detection import DetectionDataset, ImageSizeMismatchError
from cvzoo.data.formats.coco import read_coco
from cvzoo.data.formats.yolo import read_yolo


def _coco(root, json_size_of_a=(32, 24)):
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    Image.new("RGB", (32, 24)).save(root / "images" / "a.jpg")
    Image.new("RGB", (32, 24)).save(root / "images" / "b.jpg")
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": json_size_of_a[0], "height": json_size_of_a[1]},
                       {"id": 2, "file_name": "b.jpg", "width": 32, "height": 24}],
            "categories": [{"id": 1, "name": "car"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8, 4, 16, 12]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 8, 8]}]}
    path = root / "annotations" / "instances_train.json"
    path.write_text(json.dumps(data))
    return path


def test_size_mismatch_is_skipped_with_a_warning_or_raises_when_strict(tmp_path):
    annotations = read_coco(str(_coco(tmp_path, json_size_of_a=(64, 48))))
    dataset = DetectionDataset(annotations, img_size=32)
    with pytest.warns(UserWarning, match=r"skipping image .*a\.jpg: annotated as 64x48 \(width x height\) but the "
                                         r"image is 32x24"):
        _, target, meta = dataset[0]
    assert meta["file"].endswith("b.jpg")  # the next image, not a's boxes rescaled by 0.5
    with pytest.raises(ImageSizeMismatchError, match=r"a\.jpg: annotated as 64x48"):
        DetectionDataset(annotations, img_size=32, strict=True)[0]
    ok = DetectionDataset(read_coco(str(_coco(tmp_path / "ok"))), img_size=32)
    np.testing.assert_array_equal(ok.load_raw(0)[1]["boxes"], [[8, 4, 24, 16]])


def test_data_check_reports_the_mismatch(tmp_path):
    _coco(tmp_path, json_size_of_a=(64, 48))
    report = check_dataset(str(tmp_path))
    assert [(i.kind, i.file) for i in report.issues] == [("size_mismatch", "a.jpg")]
    assert "annotated as 64x48 (width x height) but the image is 32x24" in report.issues[0].message
    (tmp_path / "images" / "b.jpg").write_bytes(b"not an image")
    assert "unreadable_image" in [i.kind for i in check_dataset(str(tmp_path)).issues]


def test_yolo_sizes_follow_exif_orientation(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x20, shown (and decoded by load_image) as 20x40
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "a.jpg", exif=exif)
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    annotations = read_yolo(str(tmp_path), "train", class_names=["x"])
    record = annotations.images[0]
    assert (record.width, record.height) == (20, 40)
    np.testing.assert_allclose(record.boxes, [[5, 10, 15, 30]])
    image, target = DetectionDataset(annotations, img_size=32, strict=True).load_raw(0)
    assert image.shape[:2] == (40, 20)
    np.testing.assert_allclose(target["boxes"], [[5, 10, 15, 30]])


def test_native_size_samples_keep_each_images_size_and_pad_in_a_batch(tmp_path):
    """For a detector that resizes its images itself (R-CNN): no letterbox; the batch is padded bottom/right
    and each sample's meta says its true size."""
    from types import SimpleNamespace

    from cvzoo.data.datasets.detection import collate_detection

    root = tmp_path / "native"
    path = _coco(root)
    Image.new("RGB", (20, 30)).save(root / "images" / "b.jpg")  # b is portrait 20 x 30 (width x height)
    data = json.loads(path.read_text())
    data["images"][1].update(width=20, height=30)
    path.write_text(json.dumps(data))
    annotations = read_coco(str(path))
    dataset = DetectionDataset(annotations, img_size=800, letterbox=False)
    (a, target_a, meta_a), (b, _, meta_b) = dataset[0], dataset[1]
    assert a.shape == (3, 24, 32) and b.shape == (3, 30, 20)
    assert target_a["boxes"].tolist() == [[8.0, 4.0, 24.0, 16.0]]  # original pixels
    assert meta_a["input_size"] == (24, 32) and meta_b["input_size"] == (30, 20) and meta_a["ratio"] == (1.0, 1.0)
    images, _, metas = collate_detection([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 30, 32) and [m["input_size"] for m in metas] == [(24, 32), (30, 20)]

    flipped = DetectionDataset(annotations, img_size=800, augment=True, letterbox=False,
                               hyp=SimpleNamespace(hflip=1.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, mosaic=0.0, mixup=0.0,
                                                   degrees=0.0, translate=0.0, shear=0.0, affine_scale=0.5))
    _, target, meta = flipped[0]
    assert meta["input_size"] == (24, 32) and target["boxes"].tolist() == [[8.0, 4.0, 24.0, 16.0]]  # mirrored: 32-24=8
    with pytest.raises(ValueError, match=r"detect.augment.mosaic works on letterboxed squares"):
        DetectionDataset(annotations, augment=True, letterbox=False,
                         hyp=SimpleNamespace(hflip=0.5, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, mosaic=1.0, mixup=0.0,
                                             degrees=0.0, translate=0.0, shear=0.0, affine_scale=0.5))


def test_instance_masks_come_from_polygons_flip_with_the_image_and_must_match_its_size(tmp_path):
    from types import SimpleNamespace

    from cvzoo.data.images import DatasetError

    root = tmp_path / "masks"
    path = _coco(root)
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = [[8, 4, 24, 4, 24, 16, 8, 16]]  # the box as a polygon
    path.write_text(json.dumps(data))
    annotations = read_coco(str(path))
    _, target, _ = DetectionDataset(annotations, letterbox=False, with_masks=True)[0]
    masks = target["masks"]
    assert masks.shape == (1, 24, 32) and masks.dtype == torch.uint8
    ys, xs = torch.nonzero(masks[0], as_tuple=True)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (8, 24, 4, 16)  # the COCO API includes the far edge
    hyp = SimpleNamespace(hflip=1.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, mosaic=0.0, mixup=0.0, degrees=0.0,
                          translate=0.0, shear=0.0, affine_scale=0.5)
    _, flipped, _ = DetectionDataset(annotations, augment=True, hyp=hyp, letterbox=False, with_masks=True)[0]
    assert torch.equal(flipped["masks"], masks.flip(-1))
    annotations.images[0].masks = np.zeros((1, 10, 10), np.uint8)  # masks of another size than the image
    with pytest.raises(DatasetError, match=r"a\.jpg: its instance masks are 10x10 \(width x height\) but the image "
                                           r"is 32x24"):
        DetectionDataset(annotations, letterbox=False, with_masks=True)[0]
    with pytest.raises(ValueError, match="letterbox=False"):
        DetectionDataset(annotations, with_masks=True)
