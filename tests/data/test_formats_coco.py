"""COCO JSON: category mapping, segmentations, results files, error paths; pycocotools as reference."""

import json
import os

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.coco import (
    guess_image_dir,
    read_coco,
    read_coco_results,
    write_coco,
    write_coco_results,
)
from cvzoo.ops import masks as rle_ops

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools + numpy 2

SQUARE = np.zeros((40, 60), np.uint8)
SQUARE[10:20, 5:25] = 1


def coco_data():
    return {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 60, "height": 40},
                   {"id": 3, "file_name": "b.jpg", "width": 60, "height": 40}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 18, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 18, "bbox": [1.5, 2, 10, 20], "area": 150.0, "iscrowd": 0,
             "segmentation": [[1.5, 2, 11.5, 2, 11.5, 22, 1.5, 22]]},
            {"id": 2, "image_id": 7, "category_id": 90, "bbox": [5, 10, 20, 10], "area": 200, "iscrowd": 1,
             "segmentation": {"size": [40, 60], "counts": [int(c) for c in rle_ops.rle_encode(SQUARE.astype("uint8"), compressed=False)["counts"]]}},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 3, 4], "area": 12, "iscrowd": 0},
        ],
    }


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
    return str(path)


def test_read_maps_non_contiguous_ids(tmp_path):
    ds = read_coco(write_json(tmp_path / "instances.json", coco_data()))
    assert ds.class_names == ["person", "dog", "toothbrush"] and ds.category_ids == [1, 18, 90]
    a, b = ds.images
    assert (a.image_id, b.image_id, len(b)) == (7, 3, 0)
    np.testing.assert_array_equal(a.boxes, [[1.5, 2, 11.5, 22], [5, 10, 25, 20], [0, 0, 3, 4]])
    assert a.labels.tolist() == [1, 2, 0] and a.iscrowd.tolist() == [False, True, False]
    assert a.areas.tolist() == [150, 200, 12]
    assert a.polygons[0][0].shape == (4, 2) and a.polygons[1] == [] and a.rles[0] is None
    assert isinstance(a.rles[1]["counts"], str)  # uncompressed counts are compressed on read
    np.testing.assert_array_equal(rle_ops.rle_decode(a.rles[1]), SQUARE)


def test_round_trip_and_pycocotools_reads_our_file(tmp_path):
    src = write_json(tmp_path / "instances.json", coco_data())
    ds = read_coco(src)
    out = str(tmp_path / "out.json")
    write_coco(ds, out, copy=False)
    back = read_coco(out)
    assert back.category_ids == [1, 18, 90] and back.class_names == ds.class_names
    for x, y in zip(ds.images, back.images):
        assert (x.image_id, x.file) == (y.image_id, y.file)
        np.testing.assert_array_equal(x.boxes, y.boxes)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.areas, y.areas)
        assert x.iscrowd.tolist() == y.iscrowd.tolist()
    reference = COCO(out)
    ann = reference.loadAnns(reference.getAnnIds(imgIds=[7], catIds=[90]))[0]
    np.testing.assert_array_equal(reference.annToMask(ann), SQUARE)
    ann = reference.loadAnns(reference.getAnnIds(imgIds=[7], catIds=[18]))[0]
    assert ann["bbox"] == [1.5, 2, 10, 20] and ann["segmentation"] == coco_data()["annotations"][0]["segmentation"]


def test_write_masks_and_computed_areas(tmp_path):
    ds = read_coco(write_json(tmp_path / "i.json", coco_data()))
    image = ds.images[0]
    image.areas, image.rles, image.polygons = None, None, None
    image.masks = np.stack([SQUARE, SQUARE, np.zeros_like(SQUARE)])
    out = str(tmp_path / "m.json")
    write_coco(ds, out, copy=False)
    reference = COCO(out)
    anns = reference.loadAnns(reference.getAnnIds(imgIds=[7]))
    assert [a["area"] for a in anns] == [200, 200, 0]
    np.testing.assert_array_equal(reference.annToMask(anns[0]), SQUARE)
    assert coco_mask.area(anns[0]["segmentation"]) == 200


def test_results_file(tmp_path):
    results = {7: {"boxes": np.array([[1, 2, 11, 22]], np.float32), "scores": np.array([0.9], np.float32),
                   "labels": np.array([2])}}
    path = str(tmp_path / "results.json")
    write_coco_results(path, results, category_ids=[1, 18, 90])
    with open(path) as f:
        assert json.load(f) == [{"image_id": 7, "category_id": 90, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.9}]
    back = read_coco_results(path, category_ids=[1, 18, 90])
    np.testing.assert_array_equal(back[7]["boxes"], results[7]["boxes"])
    assert back[7]["labels"].tolist() == [2]
    assert read_coco_results(path)[7]["labels"].tolist() == [90]
    # pycocotools accepts the file as detections of the dataset.
    gt = COCO(write_json(tmp_path / "gt.json", coco_data()))
    assert len(gt.loadRes(path).getAnnIds()) == 1
    with pytest.raises(AnnotationFormatError, match="category id 90, not among"):
        read_coco_results(path, category_ids=[1])
    write_json(tmp_path / "bad.json", {"image_id": 1})
    with pytest.raises(AnnotationFormatError, match="must be a JSON list"):
        read_coco_results(str(tmp_path / "bad.json"))


def test_duplicate_image_id(tmp_path):
    data = coco_data()
    data["images"][1]["id"] = 7
    with pytest.raises(AnnotationFormatError, match="duplicate image id 7"):
        read_coco(write_json(tmp_path / "i.json", data))


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "i.json"
    path.write_text('{\n  "images": [],\n  "annotations": [\n    {"id": 1,}\n  ]\n}\n')
    with pytest.raises(AnnotationFormatError, match=r"i\.json: malformed JSON at line 4, column"):
        read_coco(str(path))


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(category_id=5), "annotation 1 has category id 5, not among"),
    (lambda d: d["annotations"][0].update(image_id=99), "annotation 1 refers to missing image id 99"),
    (lambda d: d["annotations"][0].pop("bbox"), "annotation 1 has no 'bbox'"),
    (lambda d: d["images"][0].pop("width"), "image 7 has no 'width'"),
    (lambda d: d["categories"].append({"id": 1, "name": "again"}), r"duplicate category id\(s\) \[1\]"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), "even number >= 6"),
    (lambda d: d["annotations"][1]["segmentation"].update(size=[4, 4]), "RLE size"),
    (lambda d: d.pop("images"), "not a COCO instances file"),
    (lambda d: d["annotations"][0].update(bbox=[1, float("nan"), 3, 4]), "annotation 1 has a non-finite coordinate"),
    (lambda d: d["annotations"][2].update(bbox=[0, 0, float("inf"), 4]), "annotation 3 has a non-finite coordinate"),
    (lambda d: d["annotations"][0]["segmentation"][0].__setitem__(3, float("nan")), "annotation 1 has a non-finite"),
    (lambda d: d.pop("annotations"), "has no 'annotations' key"),
])
def test_bad_input(tmp_path, change, message):
    data = coco_data()
    change(data)
    with pytest.raises(AnnotationFormatError, match=message):
        read_coco(write_json(tmp_path / "i.json", data))


def test_lenient_mode_records_issues(tmp_path):
    data = coco_data()
    data["annotations"][0]["category_id"] = 5
    issues = []
    ds = read_coco(write_json(tmp_path / "i.json", data), issues=issues)
    assert len(ds.images[0]) == 2 and [i.kind for i in issues] == ["unknown_class"]


def test_missing_annotations_key_is_an_issue_but_an_empty_list_is_not(tmp_path):
    data = coco_data()
    data["annotations"] = []  # an unlabelled (test) split
    issues = []
    assert sum(len(i) for i in read_coco(write_json(tmp_path / "i.json", data), issues=issues).images) == 0
    assert issues == []
    del data["annotations"]
    ds = read_coco(write_json(tmp_path / "i.json", data), issues=issues)
    assert len(ds) == 2 and [i.kind for i in issues] == ["no_annotations_key"]
    assert issues[0].file.endswith("i.json")


def test_guess_image_dir(tmp_path):
    (tmp_path / "annotations").mkdir()
    json_path = str(tmp_path / "annotations" / "instances_val2017.json")
    assert guess_image_dir(json_path) == str(tmp_path / "annotations")
    (tmp_path / "images" / "val2017").mkdir(parents=True)
    assert guess_image_dir(json_path) == str(tmp_path / "images" / "val2017")
    (tmp_path / "val2017").mkdir()
    assert guess_image_dir(json_path) == str(tmp_path / "val2017")
    assert os.path.isdir(read_coco(write_json(json_path, coco_data())).root)


def test_a_corrupt_rle_string_names_the_file_and_annotation(tmp_path):
    data = coco_data()
    data["annotations"][1]["segmentation"] = {"size": [40, 60], "counts": "0P"}  # ends inside a count
    with pytest.raises(AnnotationFormatError, match=r"instances\.json: annotation 2 segmentation: "):
        read_coco(write_json(tmp_path / "instances.json", data))
    data["annotations"][1]["segmentation"] = {"size": [40, 60], "counts": [5, 10]}  # runs cover 15 of 2400 pixels
    with pytest.raises(AnnotationFormatError, match=r"annotation 2 segmentation: "):
        read_coco(write_json(tmp_path / "instances.json", data))
