"""``data.cache``: decoded images in RAM give the same samples as decoding every time (cvzoo/data/cache.py)."""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Subset

from cvzoo.config.tasks import DetectAugment
from cvzoo.data.augment.classify import classification_train_transform
from cvzoo.data.cache import ImageCache, image_cache_of
from cvzoo.data.datasets.classification import ImageFolderDataset
from cvzoo.data.datasets.detection import DetectionDataset, collate_detection
from cvzoo.data.datasets.segmentation import (
    SegmentationDataset,
    SegmentationTrainTransform,
    load_segmentation_split,
)
from cvzoo.data.images import CorruptImageError
from cvzoo.data.synthetic import SceneConfig, generate_dataset, write_voc_segmentation

SCENES = SceneConfig(size_range=(48, 96), objects_per_image=(1, 3), scale_range=(0.3, 0.5), classes=["trouser", "bag"])


def _seed(seed: int = 0) -> None:
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)


def _samples(dataset, count: int) -> list:
    _seed()
    return [dataset[i] for i in range(count)]


def _fill(dataset) -> None:
    cache, paths = image_cache_of(dataset)
    cache.fill(paths, threads=2)


def _remove_files(paths) -> None:
    """Served from RAM: without their files, a cached dataset still loads (an uncached one would fail)."""
    for path in paths:
        Path(path).unlink()


@pytest.fixture
def scenes(tmp_path):
    """Twelve detection scenes of mixed sizes, PNG files at absolute paths."""
    images, annotations = generate_dataset(12, SCENES, seed=7)
    for image, record in zip(images, annotations.images):
        Image.fromarray(image).save(tmp_path / record.file)
        record.file = str(tmp_path / record.file)
    return annotations


def _assert_same_detection(first, second) -> None:
    for (image_a, target_a, meta_a), (image_b, target_b, meta_b) in zip(first, second, strict=True):
        assert torch.equal(image_a, image_b)
        assert torch.equal(target_a["boxes"], target_b["boxes"]) and torch.equal(target_a["labels"], target_b["labels"])
        assert meta_a == meta_b


def test_detection_mosaic_and_letterbox_samples_are_bit_identical_with_the_cache(scenes):
    # Fresh datasets for each side: the detection transforms own generators, seeded on first use.
    hyp = DetectAugment(mosaic=1.0, mixup=0.5, degrees=5.0, shear=2.0)
    expected_train = _samples(DetectionDataset(scenes, img_size=64, augment=True, hyp=hyp), 12)
    expected_val = _samples(DetectionDataset(scenes, img_size=64, rect_batch_size=4), 12)
    train = DetectionDataset(scenes, img_size=64, augment=True, hyp=hyp)
    val = DetectionDataset(scenes, img_size=64, rect_batch_size=4)
    _fill(train), _fill(val)
    assert len(train.image_cache) == 12 and train.image_cache.nbytes == sum(
        record.width * record.height * 3 for record in scenes.images)
    _remove_files(train.image_paths())
    _assert_same_detection(_samples(train, 12), expected_train)
    _assert_same_detection(_samples(val, 12), expected_val)


def test_detection_batches_from_forked_workers_read_the_filled_cache(scenes):
    train = DetectionDataset(scenes, img_size=64, augment=True, hyp=DetectAugment())
    _fill(train)
    _remove_files(train.image_paths())
    loader = DataLoader(train, batch_size=4, num_workers=2, collate_fn=collate_detection,
                        multiprocessing_context="fork")
    assert sum(images.shape[0] for images, _, _ in loader) == 12


def test_stored_images_are_read_only(scenes):
    dataset = DetectionDataset(scenes, img_size=64)
    _fill(dataset)
    image, _ = dataset.load_raw(0)
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0, 0] = 1


@pytest.fixture
def folder(tmp_path):
    """Two classes of four 40x30 JPEGs each (lossy: decoding does real work)."""
    rng = np.random.default_rng(0)
    samples = []
    for label, name in enumerate(("cat", "dog")):
        (tmp_path / name).mkdir()
        for i in range(4):
            path = tmp_path / name / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path, quality=90)
            samples.append((str(path), label))
    return samples


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_classification_folder_samples_are_bit_identical_with_the_cache(folder, mode):
    channels = 3 if mode == "RGB" else 1
    transform = classification_train_transform(32, (0.5,) * channels, (0.25,) * channels, channels, small_image=False,
                                               color_jitter=0.4 if mode == "RGB" else 0.0)
    expected = _samples(ImageFolderDataset(folder, ["cat", "dog"], transform, mode=mode), 8)
    dataset = ImageFolderDataset(folder, ["cat", "dog"], transform, mode=mode)
    subset = Subset(dataset, [5, 1, 6])
    cache, paths = image_cache_of(subset)
    assert cache is dataset.image_cache and paths == [folder[5][0], folder[1][0], folder[6][0]]
    _fill(dataset)
    assert dataset.image_cache.nbytes == 8 * 30 * 40 * (3 if mode == "RGB" else 1)
    _remove_files(dataset.image_paths())
    for (image_a, label_a), (image_b, label_b) in zip(_samples(dataset, 8), expected, strict=True):
        assert torch.equal(image_a, image_b) and label_a == label_b


def test_segmentation_samples_are_bit_identical_with_the_cache(tmp_path):
    write_voc_segmentation(tmp_path / "voc", n_train=4, n_val=2, config=SCENES, seed=1)
    source = load_segmentation_split(str(tmp_path / "voc"), "train")
    expected = _samples(SegmentationDataset(source, SegmentationTrainTransform(32, color_jitter=0.3)), 4)
    dataset = SegmentationDataset(source, SegmentationTrainTransform(32, color_jitter=0.3))
    _fill(dataset)
    _remove_files(dataset.image_paths())
    for (image_a, mask_a), (image_b, mask_b) in zip(_samples(dataset, 4), expected, strict=True):
        assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)


def test_a_corrupt_image_in_a_filled_cache_is_reported_as_without_it(folder, scenes):
    broken = folder[2][0]
    Path(broken).write_bytes(Path(broken).read_bytes()[:200])  # a JPEG cut short
    strict = ImageFolderDataset(folder, ["cat", "dog"], strict=True)
    _fill(strict)  # filling never raises: the error waits in the file's slot
    with pytest.raises(CorruptImageError) as raised:
        strict[2]
    assert raised.value.path == broken and broken in str(raised.value)
    assert isinstance(strict.image_cache._images[broken], CorruptImageError)
    # Not strict: the same warning naming the file and the same substitute sample as without the cache.
    uncached = ImageFolderDataset(folder, ["cat", "dog"])
    cached = ImageFolderDataset(folder, ["cat", "dog"])
    _fill(cached)
    for dataset in (uncached, cached):
        with pytest.warns(UserWarning, match=f"skipping corrupt image {broken}"):
            image, label = dataset[2]
        assert torch.equal(image, uncached[3][0]) and label == folder[3][1]
    # Detection, strict: the cached dataset raises naming the file.
    Path(scenes.images[3].file).write_bytes(b"\x89PNG\r\n\x1a\n cut")
    detection = DetectionDataset(scenes, img_size=64, strict=True)
    _fill(detection)
    with pytest.raises(CorruptImageError, match=scenes.images[3].file):
        detection[3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detection[2]  # the others load


def test_keep_misses_fills_lazily_and_inactive_ignores_what_is_stored(folder):
    cache = ImageCache("RGB")
    cache.keep_misses = True
    first = cache.array(folder[0][0])
    assert folder[0][0] in cache and len(cache) == 1
    cache.keep_misses, cache.active = False, False
    assert cache.array(folder[0][0]) is not first and len(cache) == 1
    cache.active = True
    assert cache.array(folder[0][0]) is first
