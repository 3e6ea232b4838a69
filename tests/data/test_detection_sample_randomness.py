"""Each training sample's augmentation is keyed by (seed, epoch, index): the same in every process, new
every epoch, and the epoch reaches persistent loading workers without restarting them."""

import pytest
import torch
from torch.utils.data import DataLoader

from cvzoo.config import Config
from cvzoo.data.datasets.detection import DetectionDataset, collate_detection
from cvzoo.data.synthetic import SceneConfig, generate_dataset


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("keyed")
    config = SceneConfig(image_size=(64, 64), objects_per_image=(1, 2), classes=["trouser", "bag"])
    images, annotations = generate_dataset(6, config, seed=2, split="train")
    for image, record in zip(images, annotations.images):
        Image.fromarray(image).save(root / record.file)
        record.file = str(root / record.file)
    return annotations


def training_set(annotations, seed=0):
    dataset = DetectionDataset(annotations, 64, augment=True, hyp=Config().detect.augment)  # YOLO's mosaic etc.
    dataset.sample_seed = seed
    return dataset


def images(loader):
    return torch.cat([batch[0] for batch in loader])


def test_keyed_augmentation_is_per_sample_per_epoch_and_reaches_persistent_workers(scenes):
    dataset = training_set(scenes)
    in_process = {}
    for epoch in (0, 1):
        dataset.set_epoch(epoch)
        # Twice in a row, and in reverse order: a sample does not depend on what was loaded before it.
        first = [dataset[i][0] for i in range(len(dataset))]
        again = [dataset[i][0] for i in reversed(range(len(dataset)))][::-1]
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        in_process[epoch] = torch.stack(first)
    assert not torch.equal(in_process[0], in_process[1])  # another epoch, other draws
    dataset.set_epoch(0)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, persistent_workers=True,
                        collate_fn=collate_detection)
    for epoch in (0, 1):
        dataset.set_epoch(epoch)  # in the main process only: the workers keep running
        assert torch.equal(images(loader), in_process[epoch]), epoch
    assert not torch.equal(training_set(scenes, seed=1)[0][0], in_process[0][0])  # another seed, other draws
