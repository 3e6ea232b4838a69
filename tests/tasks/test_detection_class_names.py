"""One class list for every split of a detection dataset: ``data.names``, else the training split's. VOC
names classes per object, so a validation split may lack some (it used to be an error)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cvzoo.api import build_config
from cvzoo.tasks.detection import DetectionTask

XML = """<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
{objects}</annotation>"""
OBJECT = "<object><name>{cls}</name><difficult>0</difficult><bndbox><xmin>{x}</xmin><ymin>5</ymin>" \
         "<xmax>{x2}</xmax><ymax>30</ymax></bndbox></object>"


def _voc(root, splits: dict[str, dict[str, list[str]]]):
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for split, images in splits.items():
        for name, classes in images.items():
            objects = "".join(OBJECT.format(cls=c, x=5 + 20 * i, x2=20 + 20 * i) for i, c in enumerate(classes))
            (root / "Annotations" / f"{name}.xml").write_text(XML.format(name=name, objects=objects))
            Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(images) + "\n")
    return root


def _task(source, *overrides):
    return DetectionTask(build_config(task="detect", overrides=[f"data.source={source}", "data.img_size=64",
                                                                 *overrides]))


def test_a_validation_split_without_some_classes_uses_the_training_list(tmp_path):
    # Not all VOC's 20 names (that list would be taken whole): the sorted names found in training.
    root = _voc(tmp_path / "voc", {"train": {"a": ["owl", "yak"], "b": ["elk"]}, "val": {"c": ["yak"]}})
    task = _task(root)
    train, val = task.build_datasets()
    assert task.class_names == ["elk", "owl", "yak"]
    assert val.annotations.class_names == ["elk", "owl", "yak"]
    assert val.annotations.images[0].labels.tolist() == [2]  # "yak" keeps its training index


def test_data_names_fixes_the_list_and_its_order_for_every_split(tmp_path):
    root = _voc(tmp_path / "voc", {"train": {"a": ["cat", "dog"]}, "val": {"c": ["dog"]}})
    task = _task(root, "data.names=[dog, cat, fox]")
    train, val = task.build_datasets()
    assert task.class_names == ["dog", "cat", "fox"]
    assert train.annotations.images[0].labels.tolist() == [1, 0]
    assert val.annotations.images[0].labels.tolist() == [0]
    # A name the list lacks is an error naming it (VOC reader: unknown class), not a silent new index.
    with pytest.raises(Exception, match="'cat' is not in"):
        _task(root, "data.names=[dog]").build_datasets()
