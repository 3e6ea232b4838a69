"""``data.cache``: the automatic rule, the run summary's words, and runs that cache training the same as runs
that do not (cvzoo/engine/image_cache.py)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from cvzoo.api import build_config_with_sources
from cvzoo.config import Config, ConfigError, apply_overrides
from cvzoo.config.validate import validate_config
from cvzoo.data.datasets.classification import ImageFolderDataset
from cvzoo.engine import image_cache
from cvzoo.engine.image_cache import decode_share, setup_image_cache
from cvzoo.engine.trainer import Trainer
from tests.engine.toy_task import ToyTask

CLASSES = ["a", "b", "c"]


def _folder(root, count: int, size=(4, 2), seed: int = 0, mode: str = "L", suffix: str = ".png"):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(count):
        path = root / f"{i:03d}{suffix}"
        shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(path)
        samples.append((str(path), i % len(CLASSES)))
    return samples


def _features(image: Image.Image) -> torch.Tensor:
    """A 4x2 grey image as 8 features, flipped at random (a draw from torch's generator)."""
    pixels = TF.pil_to_tensor(image).float() / 255
    if torch.rand(()) < 0.5:
        pixels = pixels.flip(-1)
    return pixels.flatten()


class ImageToyTask(ToyTask):
    """The toy task on 4x2 grey image files: 48 training and 12 validation images."""

    def __init__(self, config: Config, root) -> None:
        super().__init__(config)
        (root / "train").mkdir(exist_ok=True), (root / "val").mkdir(exist_ok=True)
        self.train_set = ImageFolderDataset(_folder(root / "train", 48), CLASSES, _features, mode="L")
        self.val_set = ImageFolderDataset(_folder(root / "val", 12, seed=1), CLASSES, _features, mode="L")


def _run(tmp_path, cache: str, name: str) -> tuple[dict, list[str]]:
    config, sources = build_config_with_sources(None, [
        f"run.project={tmp_path}", f"run.name={name}", "run.progress=false", "run.tensorboard=false",
        "run.plots=false", "data.batch_size=8", "data.workers=0", "train.device=cpu", "train.epochs=2",
        f"data.cache={cache}"])
    lines: list[str] = []
    trainer = Trainer(config, ImageToyTask(config, tmp_path), sources=sources)
    trainer.log = lines.append
    result = trainer.fit()
    state = torch.load(result.last_checkpoint, weights_only=False)["model"]
    return state, lines


def test_a_cached_run_trains_the_same_weights_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "MIN_DECODE_SHARE", 0.0)
    plain, plain_lines = _run(tmp_path, "false", "off")
    cached, cached_lines = _run(tmp_path, "ram", "ram")
    auto, auto_lines = _run(tmp_path, "auto", "auto")
    for state in (cached, auto):
        assert state.keys() == plain.keys() and all(torch.equal(state[k], plain[k]) for k in plain)
    data_line = next(line for line in plain_lines if line.startswith("data "))
    assert data_line.endswith("; no image cache (data.cache=false)")
    data_line = next(line for line in cached_lines if line.startswith("data "))
    # 60 images of 4x2 grey pixels: 480 bytes.
    assert "; image cache in RAM: 0.00048 MB, 60 images decoded in " in data_line
    assert data_line.endswith("(data.cache=ram)")
    data_line = next(line for line in auto_lines if line.startswith("data "))
    assert data_line.endswith("; no image cache (auto: on a CPU the model's step, not decoding, bounds an epoch)")


def test_the_automatic_rule_caches_what_fits_in_half_the_available_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "MIN_DECODE_SHARE", 0.0)
    samples = _folder(tmp_path, 30, size=(40, 25))
    need = 30 * 40 * 25 * 3  # RGB

    def decide(available: int, copies: int = 1):
        monkeypatch.setattr(image_cache, "available_memory", lambda: available)
        dataset = ImageFolderDataset(samples, CLASSES, mode="RGB")
        return dataset, setup_image_cache("auto", dataset, copies=copies)

    dataset, report = decide(2 * need)
    assert report.enabled and report.nbytes == need and report.images == 30 and len(dataset.image_cache) == 30
    dataset, report = decide(2 * need - 1)  # a "huge" dataset for this memory
    assert not report.enabled and len(dataset.image_cache) == 0
    assert report.describe() == "no image cache (auto: 0.09 MB decoded is more than 50% of the 0.18 MB available)"
    dataset, report = decide(2 * need, copies=2)  # two DDP ranks, two copies
    assert not report.enabled and "(2 processes)" in report.why
    dataset, report = decide(None)
    assert not report.enabled and report.why == "auto: the available memory is unknown"
    dataset = ImageFolderDataset(samples, CLASSES, mode="RGB")
    assert not setup_image_cache("auto", dataset, on_cpu=True).enabled  # a CPU run: never automatically


def test_the_automatic_rule_skips_the_cache_where_decoding_is_a_small_share(tmp_path, monkeypatch):
    monkeypatch.setattr(image_cache, "available_memory", lambda: 2**40)
    samples = _folder(tmp_path, 8, size=(320, 240), mode="RGB", suffix=".jpg")
    decode_only = ImageFolderDataset(samples, CLASSES, mode="RGB")
    assert decode_share(decode_only) > 0.5

    def slow(image):
        time.sleep(0.04)  # an augmentation far costlier than decoding a 96x64 JPEG
        return TF.pil_to_tensor(image)

    small = _folder(tmp_path, 8, size=(96, 64), mode="RGB", seed=2, suffix=".jpeg")
    slow_set = ImageFolderDataset(small, CLASSES, slow, mode="RGB")
    report = setup_image_cache("auto", slow_set)
    assert not report.enabled and "of a training sample's load time, under 20%" in report.why
    assert len(slow_set.image_cache) == 0  # what the probe decoded is dropped


def test_explicit_settings_and_data_without_image_files(tmp_path):
    samples = _folder(tmp_path, 6)
    dataset = ImageFolderDataset(samples, CLASSES, mode="L")
    assert setup_image_cache(False, dataset).describe() == "no image cache (data.cache=false)"
    assert len(dataset.image_cache) == 0
    report = setup_image_cache(True, dataset)
    assert report.enabled and report.why == "data.cache=ram" and report.nbytes == 6 * 8
    assert setup_image_cache("ram", ToyTask(Config()).train_set) is None  # in-memory tensors: nothing to cache


@pytest.mark.parametrize("text, value", [("ram", "ram"), ("auto", "auto"), ("false", False), ("true", True)])
def test_data_cache_values(text, value):
    config = apply_overrides(Config(), [f"data.cache={text}"])
    assert config.data.cache == value
    validate_config(config)


def test_an_invalid_data_cache_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="data.cache"):
        apply_overrides(Config(), ["data.cache=disk"])
    config = Config()
    config.data.cache = "disk"  # set in Python, past the typed parsing
    with pytest.raises(ConfigError, match=r"data.cache: 'disk' is not one of 'auto', 'ram', false"):
        validate_config(config)


def test_the_automatic_probe_leaves_the_detection_transforms_draws_alone(tmp_path, monkeypatch):
    """The mosaic and affine own numpy generators (seeded on first use): the probe runs on a copy, so the
    run draws what it would have drawn without it."""
    from cvzoo.config.tasks import DetectAugment
    from cvzoo.data.datasets.detection import DetectionDataset
    from cvzoo.data.synthetic import SceneConfig, generate_dataset

    monkeypatch.setattr(image_cache, "MIN_DECODE_SHARE", 0.0)
    monkeypatch.setattr(image_cache, "available_memory", lambda: 2**40)
    images, annotations = generate_dataset(6, SceneConfig(size_range=(48, 64), classes=["bag"]), seed=3)
    for image, record in zip(images, annotations.images):
        Image.fromarray(image).save(tmp_path / record.file)
        record.file = str(tmp_path / record.file)

    def samples(probe: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        dataset = DetectionDataset(annotations, img_size=64, augment=True, hyp=DetectAugment(degrees=10.0))
        if probe:
            assert setup_image_cache("auto", dataset).enabled
        return [dataset[i][0] for i in range(6)]

    assert all(torch.equal(a, b) for a, b in zip(samples(True), samples(False), strict=True))
