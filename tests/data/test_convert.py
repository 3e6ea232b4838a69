"""Format detection, load_detection_dataset and format-to-format conversion (with image copying)."""

import json
import os

import numpy as np
import pytest
import yaml
from PIL import Image

from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.auto import detect_format, find_coco_json, load_detection_dataset
from cvzoo.data.formats.convert import convert_dataset, write_dataset
from cvzoo.data.formats.voc import VOC_CLASSES

OBJECT = ("<object><name>{name}</name><difficult>{difficult}</difficult>"
          "<bndbox><xmin>{0}</xmin><ymin>{1}</ymin><xmax>{2}</xmax><ymax>{3}</ymax></bndbox></object>")
BOXES = {
    "000001": [("horse", (69, 172, 270, 330), 0), ("person", (150, 141, 229, 284), 1)],
    "000002": [("dog", (1, 1, 500, 375), 0), ("dog", (48.5, 240, 195, 371), 0), ("cat", (8, 12, 352, 498), 0)],
    "000003": [],
}


def make_voc(root, size=(500, 375)):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, objects in BOXES.items():
        body = "".join(OBJECT.format(*box, name=name, difficult=d) for name, box, d in objects)
        xml = (f"<annotation><filename>{image_id}.jpg</filename><size><width>{size[0]}</width>"
               f"<height>{size[1]}</height><depth>3</depth></size>{body}</annotation>")
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(xml)
        Image.new("RGB", size, (image_id.count("1") * 60, 0, 0)).save(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "w") as f:
        f.write("".join(f"{i}\n" for i in BOXES))
    return root


def test_round_trip_voc_coco_yolo_voc(tmp_path):
    voc = make_voc(str(tmp_path / "VOCdevkit" / "VOC2007"))
    source = load_detection_dataset(str(tmp_path / "VOCdevkit"), "train")
    convert_dataset(str(tmp_path / "VOCdevkit"), "voc", str(tmp_path / "coco"), "coco")
    convert_dataset(str(tmp_path / "coco"), "coco", str(tmp_path / "yolo"), "yolo")
    convert_dataset(str(tmp_path / "yolo" / "data.yaml"), "auto", str(tmp_path / "voc2"), "voc")
    final = load_detection_dataset(str(tmp_path / "voc2"), "train")
    assert final.class_names == source.class_names == list(VOC_CLASSES)  # standard names: standard order
    assert [os.path.basename(i.file) for i in final.images] == ["000001.jpg", "000002.jpg", "000003.jpg"]
    for a, b in zip(source.images, final.images):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)  # YOLO keeps 6 decimals of w/h
        np.testing.assert_array_equal(a.labels, b.labels)
        with Image.open(final.image_path(b)) as im, Image.open(source.image_path(a)) as ref:
            assert np.array_equal(np.asarray(im), np.asarray(ref))  # images copied byte-identically
    # The notes' worked example as written by the YOLO step.
    with open(tmp_path / "yolo" / "labels" / "train" / "000001.txt") as f:
        assert f.readline().split()[1:] == ["0.339000", "0.669333", "0.402000", "0.421333"]
    assert os.path.isfile(tmp_path / "coco" / "images" / "train" / "000002.jpg")
    assert voc


def test_voc_to_voc_lossless(tmp_path):
    make_voc(str(tmp_path / "a"))
    convert_dataset(str(tmp_path / "a"), "voc", str(tmp_path / "b"), "voc")
    a, b = load_detection_dataset(str(tmp_path / "a")), load_detection_dataset(str(tmp_path / "b"))
    for x, y in zip(a.images, b.images):
        np.testing.assert_array_equal(x.boxes, y.boxes)
        assert x.difficult.tolist() == y.difficult.tolist()


def test_labelme_to_coco(tmp_path):
    src = tmp_path / "lm"
    src.mkdir()
    Image.new("RGB", (40, 30)).save(src / "x.png")
    shapes = [{"label": "leaf", "shape_type": "polygon", "points": [[2, 3], [20, 3], [10, 25]]}]
    (src / "x.json").write_text(json.dumps({"shapes": shapes, "imagePath": "x.png", "imageHeight": 30,
                                            "imageWidth": 40}))
    assert detect_format(str(src)) == "labelme"
    out = tmp_path / "coco.json"
    convert_dataset(str(src), "auto", str(out), "coco", split="val")
    data = json.loads(out.read_text())
    assert data["categories"] == [{"id": 1, "name": "leaf", "supercategory": ""}]
    assert data["annotations"][0]["bbox"] == [2, 3, 18, 22]
    assert data["annotations"][0]["segmentation"] == [[2, 3, 20, 3, 10, 25]]
    assert data["annotations"][0]["area"] == 198  # shoelace area of the triangle
    assert os.path.isfile(tmp_path / "images" / "val" / "x.png")


def test_detect_format(tmp_path):
    make_voc(str(tmp_path / "v" / "VOCdevkit" / "VOC2012"))
    assert detect_format(str(tmp_path / "v")) == "voc"
    assert detect_format(str(tmp_path / "v" / "VOCdevkit" / "VOC2012")) == "voc"
    convert_dataset(str(tmp_path / "v"), "voc", str(tmp_path / "c"), "coco")
    assert detect_format(str(tmp_path / "c")) == "coco"
    assert detect_format(str(tmp_path / "c" / "annotations" / "instances_train.json")) == "coco"
    convert_dataset(str(tmp_path / "v"), "voc", str(tmp_path / "y"), "yolo")
    assert detect_format(str(tmp_path / "y")) == "yolo" and detect_format(str(tmp_path / "y" / "data.yaml")) == "yolo"
    (tmp_path / "y" / "data.yaml").unlink()
    assert detect_format(str(tmp_path / "y")) == "yolo"  # labels/ folder
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationFormatError, match="no VOC, COCO, YOLO or Labelme layout"):
        detect_format(str(tmp_path / "empty"))
    with pytest.raises(AnnotationFormatError, match="no such file or folder"):
        detect_format(str(tmp_path / "missing"))
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(AnnotationFormatError, match="cannot tell the format"):
        detect_format(str(tmp_path / "x.json"))


def test_load_detection_dataset_every_entry_point(tmp_path):
    make_voc(str(tmp_path / "voc"))
    reference = load_detection_dataset(str(tmp_path / "voc"), "train")
    write_dataset(reference, str(tmp_path / "coco"), "coco", split="val")
    write_dataset(reference, str(tmp_path / "coco"), "coco", split="train")
    yaml_path = write_dataset(reference, str(tmp_path / "yolo"), "yolo", split="train")
    for path in (str(tmp_path / "coco"), str(tmp_path / "coco" / "annotations" / "instances_train.json"),
                 str(tmp_path / "yolo"), yaml_path):
        ds = load_detection_dataset(path, "train")
        assert ds.class_names == reference.class_names and len(ds) == 3
        assert sum(len(i) for i in ds.images) == 5
        assert all(os.path.isfile(ds.image_path(i)) for i in ds.images)
    assert find_coco_json(str(tmp_path / "coco"), "val").endswith("instances_val.json")
    with pytest.raises(AnnotationFormatError, match="cannot choose the COCO file for split 'test'"):
        load_detection_dataset(str(tmp_path / "coco"), "test")
    with open(yaml_path) as f:
        assert yaml.safe_load(f)["names"] == dict(enumerate(reference.class_names))


def test_bad_format_names(tmp_path):
    make_voc(str(tmp_path / "voc"))
    with pytest.raises(AnnotationFormatError, match="unknown target format 'labelme'"):
        convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "o"), "labelme")
    with pytest.raises(AnnotationFormatError, match="unknown source format 'xml'"):
        convert_dataset(str(tmp_path / "voc"), "xml", str(tmp_path / "o"), "coco")
    with pytest.raises(AnnotationFormatError, match="unknown format 'tfrecord'"):
        load_detection_dataset(str(tmp_path / "voc"), format="tfrecord")


def test_voc_output_snaps_yolo_rounding_and_coco_ids_start_at_one(tmp_path):
    make_voc(str(tmp_path / "voc"))
    convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "yolo"), "yolo")
    convert_dataset(str(tmp_path / "yolo"), "yolo", str(tmp_path / "back"), "voc")
    xml = (tmp_path / "back" / "Annotations" / "000002.xml").read_text()
    for value in ("<xmin>48.5</xmin>", "<ymin>240</ymin>", "<xmax>195</xmax>", "<ymax>371</ymax>"):
        assert value in xml
    convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "c.json"), "coco")
    data = json.loads((tmp_path / "c.json").read_text())
    assert [i["id"] for i in data["images"]] == [1, 2, 3]
    assert {a["image_id"] for a in data["annotations"]} == {1, 2}


def test_voc_refuses_an_image_id_of_another_split(tmp_path):
    make_voc(str(tmp_path / "a"))
    make_voc(str(tmp_path / "b"))  # the same ids, e.g. a val split numbered from 000001 again
    os.rename(tmp_path / "b" / "ImageSets" / "Main" / "train.txt", tmp_path / "b" / "ImageSets" / "Main" / "val.txt")
    convert_dataset(str(tmp_path / "a"), "voc", str(tmp_path / "out"), "voc", split="train")
    before = (tmp_path / "out" / "Annotations" / "000001.xml").read_text()
    with pytest.raises(AnnotationFormatError, match=(
            r"out/Annotations/000001\.xml: already exists \(image id '000001' of ImageSets/Main/train\.txt\); "
            r"writing .*b/JPEGImages/000001\.jpg there would overwrite it")):
        convert_dataset(str(tmp_path / "b"), "voc", str(tmp_path / "out"), "voc", split="val")
    assert (tmp_path / "out" / "Annotations" / "000001.xml").read_text() == before  # nothing written
    assert not (tmp_path / "out" / "ImageSets" / "Main" / "val.txt").exists()


@pytest.mark.parametrize("fmt, existing", [("yolo", "labels/train/000001.txt"),
                                           ("coco", "annotations/instances_train.json")])
def test_an_output_folder_holding_the_files_is_refused(tmp_path, fmt, existing):
    make_voc(str(tmp_path / "voc"))
    main = tmp_path / "voc" / "ImageSets" / "Main"
    (main / "val.txt").write_text((main / "train.txt").read_text())
    convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "out"), fmt)
    with pytest.raises(AnnotationFormatError, match=rf"out/{existing}: already exists"):
        convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "out"), fmt)
    convert_dataset(str(tmp_path / "voc"), "voc", str(tmp_path / "out"), fmt, split="val")  # its own files


def test_images_sharing_a_stem_get_their_own_label_files(tmp_path):
    from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

    for name in ("a.jpg", "a.png", "A.bmp"):
        Image.new("RGB", (20, 10)).save(tmp_path / name)
    images = [ImageAnnotation(name, 20, 10, [[k, 1, 10, 9]], [0]) for k, name in enumerate(["a.jpg", "a.png", "A.bmp"])]
    dataset = DatasetAnnotations(["x"], images, root=str(tmp_path))
    write_dataset(dataset, str(tmp_path / "y"), "yolo")
    assert sorted(os.listdir(tmp_path / "y" / "labels" / "train")) == ["A_2.txt", "a.txt", "a_1.txt"]
    back = load_detection_dataset(str(tmp_path / "y"), "train")
    assert sorted(float(img.boxes[0, 0]) for img in back.images) == [0, 1, 2]

