"""Pascal VOC XML: reading, writing, layouts, the notes' worked example and error paths."""

import os

import numpy as np
import pytest
from PIL import Image

from cvzoo.data.bundled import asset_path
from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.voc import VOC_CLASSES, parse_voc_xml, read_voc, voc_xml, write_voc
from cvzoo.data.formats.yolo import label_rows
from cvzoo.data.types import DatasetAnnotations, ImageAnnotation

ASSETS = os.path.join(os.path.dirname(__file__), "assets")

HORSE_XML = """<annotation>
  <folder>VOC2007</folder>
  <filename>000001.jpg</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object>
    <name>horse</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
    <bndbox><xmin>69</xmin><ymin>172</ymin><xmax>270</xmax><ymax>330</ymax></bndbox>
  </object>
  <object>
    <name>person</name><pose>Unspecified</pose><truncated>0</truncated><difficult>1</difficult>
    <bndbox><xmin>150.5</xmin><ymin>141</ymin><xmax>229</xmax><ymax>284</ymax></bndbox>
  </object>
</annotation>
"""


def make_voc(root, ids_per_split, xml=HORSE_XML, image_size=(500, 375)):
    os.makedirs(os.path.join(root, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, "JPEGImages"), exist_ok=True)
    os.makedirs(os.path.join(root, "ImageSets", "Main"), exist_ok=True)
    for split, ids in ids_per_split.items():
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
        for i in ids:
            with open(os.path.join(root, "Annotations", f"{i}.xml"), "w") as f:
                f.write(xml.replace("000001.jpg", f"{i}.jpg"))
            Image.new("RGB", image_size).save(os.path.join(root, "JPEGImages", f"{i}.jpg"))
    return root


def test_worked_example_to_yolo(tmp_path):
    root = make_voc(str(tmp_path / "VOC2007"), {"train": ["000001"]})
    ds = read_voc(root, "train")
    image = ds.images[0]
    assert ds.class_names == list(VOC_CLASSES)
    np.testing.assert_array_equal(image.boxes[0], [69, 172, 270, 330])  # VOC numbers unchanged
    assert image.labels.tolist() == [VOC_CLASSES.index("horse"), VOC_CLASSES.index("person")]
    assert image.difficult.tolist() == [False, True] and image.truncated.tolist() == [True, False]
    assert image.poses == ["Left", "Unspecified"]
    row = label_rows(image, segments=False)[0].split()
    assert int(row[0]) == VOC_CLASSES.index("horse")
    np.testing.assert_allclose([float(v) for v in row[1:]], [0.339, 0.66933, 0.402, 0.42133], atol=5e-6)


def test_round_trip_is_exact(tmp_path):
    root = make_voc(str(tmp_path / "src"), {"train": ["000001", "000002"]})
    ds = read_voc(root, "train")
    write_voc(ds, str(tmp_path / "out"), split="train")
    back = read_voc(str(tmp_path / "out"), "train")
    assert [os.path.basename(i.file) for i in back.images] == ["000001.jpg", "000002.jpg"]
    assert os.path.isfile(back.image_path(back.images[0]))
    for a, b in zip(ds.images, back.images):
        np.testing.assert_array_equal(a.boxes, b.boxes)  # 150.5 survives as written
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.difficult.tolist() == b.difficult.tolist() and a.truncated.tolist() == b.truncated.tolist()
        assert a.poses == b.poses
    assert "<xmin>150.5</xmin>" in voc_xml(ds.images[0], "a.jpg", ds.class_names)
    assert "<xmin>69</xmin>" in voc_xml(ds.images[0], "a.jpg", ds.class_names)


def test_vocdevkit_2007_and_2012(tmp_path):
    devkit = tmp_path / "VOCdevkit"
    make_voc(str(devkit / "VOC2007"), {"trainval": ["000001", "000002"], "test": ["000003"]})
    make_voc(str(devkit / "VOC2012"), {"trainval": ["2008_000001"]})
    for path in (str(tmp_path), str(devkit)):
        ds = read_voc(path, "trainval")
        files = [i.file.replace(os.sep, "/") for i in ds.images]
        assert files[-1].endswith("VOC2012/JPEGImages/2008_000001.jpg") and len(files) == 3
        assert all(os.path.isfile(ds.image_path(i)) for i in ds.images)
    assert len(read_voc(str(devkit / "VOC2007"), None)) == 3  # every XML


def test_class_list_from_annotations_or_given(tmp_path):
    root = make_voc(str(tmp_path / "v"), {"train": ["a"]}, xml=HORSE_XML.replace("horse", "zebra"))
    ds = read_voc(root, "train")
    assert ds.class_names == ["person", "zebra"]  # not all standard: the sorted names found
    assert ds.images[0].labels.tolist() == [1, 0]
    ds = read_voc(root, "train", class_names=["zebra", "person", "cat"])
    assert ds.images[0].labels.tolist() == [0, 1]
    with pytest.raises(AnnotationFormatError, match=r"a\.xml.*'zebra' is not in"):
        read_voc(root, "train", class_names=["person"])
    issues = []
    ds = read_voc(root, "train", class_names=["person"], issues=issues)
    assert len(ds.images[0]) == 1 and issues[0].kind == "unknown_class"


def test_real_sample():
    ds = read_voc(str(asset_path("voc_sample")), "train")
    image = ds.images[0]
    assert (image.width, image.height, len(image)) == (500, 375, 19)
    assert [ds.class_names[i] for i in image.labels[:2]] == ["bottle", "chair"]
    np.testing.assert_array_equal(image.boxes[0], [221, 256, 260, 345])


def test_real_sample_instance_masks_come_from_segmentation_object(tmp_path):
    """Object k of the XML is value k + 1 of SegmentationObject/<id>.png: each mask lies in its box."""
    import shutil

    from cvzoo.data.formats.masks import annotation_masks

    image = read_voc(str(asset_path("voc_sample")), "train").images[0]
    assert image.rles is not None and len(image.rles) == 19
    masks = annotation_masks(image)
    for mask, (x1, y1, x2, y2) in zip(masks, image.boxes):
        ys, xs = np.nonzero(mask)
        assert len(xs) and x1 - 1 <= xs.min() and xs.max() <= x2 and y1 - 1 <= ys.min() and ys.max() <= y2
    root = tmp_path / "voc"
    shutil.copytree(str(asset_path("voc_sample")), root)
    png = next((root / "SegmentationObject").glob("*.png"))
    Image.open(png).crop((0, 0, 400, 300)).save(png)
    with pytest.raises(AnnotationFormatError, match=r"the instance mask is 400x300 \(width x height\) but its XML "
                                                    r"gives the image as 500x375"):
        read_voc(str(root), "train")


def test_malformed_xml_names_file_and_position(tmp_path):
    root = make_voc(str(tmp_path / "v"), {"train": ["a"]}, xml=HORSE_XML.replace("</size>", "</sise>"))
    with pytest.raises(AnnotationFormatError, match=r"a\.xml: malformed XML at line 4, column \d+"):
        read_voc(root, "train")


@pytest.mark.parametrize("xml, message", [
    (HORSE_XML.replace("<size><width>500</width><height>375</height><depth>3</depth></size>", ""), "no <size>"),
    (HORSE_XML.replace("<xmin>69</xmin>", ""), r"object 0 \('horse'\) has no <xmin>"),
    (HORSE_XML.replace("<xmin>69</xmin>", "<xmin>six</xmin>"), "is not a number: 'six'"),
    (HORSE_XML.replace("<name>horse</name>", ""), "object 0 has no <name>"),
])
def test_missing_fields(tmp_path, xml, message):
    path = tmp_path / "a.xml"
    path.write_text(xml)
    with pytest.raises(AnnotationFormatError, match=message):
        parse_voc_xml(str(path))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_coordinate_names_file_and_object(tmp_path, value):
    xml = HORSE_XML.replace("<ymax>284</ymax>", f"<ymax>{value}</ymax>")
    make_voc(str(tmp_path), {"train": ["000001"]}, xml=xml)
    with pytest.raises(AnnotationFormatError, match=r"000001\.xml: object 1 \('person'\) has a non-finite"):
        read_voc(str(tmp_path), "train")
    issues = []
    ds = read_voc(str(tmp_path), "train", issues=issues)
    assert ds.images[0].labels.tolist() == [VOC_CLASSES.index("horse")]
    assert [i.kind for i in issues] == ["non_finite"]


def test_layout_errors(tmp_path):
    with pytest.raises(AnnotationFormatError, match="no VOC layout"):
        read_voc(str(tmp_path))
    root = make_voc(str(tmp_path / "v"), {"train": ["a"]})
    with pytest.raises(AnnotationFormatError, match=r"val\.txt: split file not found"):
        read_voc(root, "val")
    with open(os.path.join(root, "ImageSets", "Main", "train.txt"), "a") as f:
        f.write("ghost\n")
    with pytest.raises(AnnotationFormatError, match=r"ghost\.xml: annotation of image id 'ghost'"):
        read_voc(root, "train")


def test_write_rejects_bad_labels_and_dedupes_names(tmp_path):
    for sub in ("a", "b"):
        os.makedirs(tmp_path / sub)
        Image.new("RGB", (4, 4)).save(tmp_path / sub / "img.jpg")
    ds = DatasetAnnotations(["cat"], [
        ImageAnnotation("a/img.jpg", 4, 4, boxes=[[0, 0, 2, 2]], labels=[0]),
        ImageAnnotation("b/img.jpg", 4, 4),
    ], root=str(tmp_path))
    write_voc(ds, str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out" / "JPEGImages")) == ["a_img.jpg", "b_img.jpg"]
    ds.images[0].labels[0] = 3
    with pytest.raises(AnnotationFormatError, match="label 3 outside 0..0"):
        write_voc(ds, str(tmp_path / "out2"))


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_image_size_names_the_file(tmp_path, value):
    xml = HORSE_XML.replace("<width>500</width>", f"<width>{value}</width>")
    make_voc(str(tmp_path), {"train": ["000001"]}, xml=xml)
    with pytest.raises(AnnotationFormatError, match=r"000001\.xml: <size> <width> is not a finite number"):
        read_voc(str(tmp_path), "train")


def _labelimg_folder(root, names=("a", "b", "c", "d", "e")):
    """labelImg's layout: each image with its XML beside it, no Annotations/ or split files."""
    os.makedirs(root, exist_ok=True)
    for name in names:
        with open(os.path.join(root, f"{name}.xml"), "w") as f:
            f.write(HORSE_XML.replace("000001.jpg", f"{name}.jpg"))
        Image.new("RGB", (500, 375)).save(os.path.join(root, f"{name}.jpg"))
    return root


def test_labelimg_flat_folder_is_voc_and_holds_out_val_fraction(tmp_path):
    from cvzoo.data.formats._common import MissingSplitError
    from cvzoo.data.formats.auto import detect_format, load_detection_dataset

    root = _labelimg_folder(str(tmp_path / "crowns"))
    assert detect_format(root) == "voc"
    everything = load_detection_dataset(root, split=None)
    assert len(everything) == 5 and everything.images[0].file == "a.jpg" and len(everything.images[0]) == 2
    train = load_detection_dataset(root, "train", val_fraction=0.4, seed=1)
    val = load_detection_dataset(root, "val", val_fraction=0.4, seed=1)
    assert len(train) == 3 and len(val) == 2
    assert not {i.file for i in train.images} & {i.file for i in val.images}
    with pytest.raises(MissingSplitError, match=r"flat VOC \(labelImg\) folder has no 'val' split; set "
                                                r"data.val_fraction"):
        load_detection_dataset(root, "val")


def test_a_stale_filename_does_not_pick_another_image(tmp_path):
    root = _labelimg_folder(str(tmp_path / "flat"), names=("a", "b"))
    # a.xml copied from b (its <filename> says b.jpg) and a re-encoded to PNG: a.xml still describes a.png.
    with open(os.path.join(root, "a.xml"), "w") as f:
        f.write(HORSE_XML.replace("000001.jpg", "b.jpg"))
    os.remove(os.path.join(root, "a.jpg"))
    Image.new("RGB", (500, 375)).save(os.path.join(root, "a.png"))
    files = [image.file for image in read_voc(root, None).images]
    assert files == ["a.png", "b.jpg"]
    # The same in a VOC2007-style folder; <filename> still serves an XML whose stem names no image.
    voc = make_voc(str(tmp_path / "v"), {"train": ["x", "y"]})
    os.rename(os.path.join(voc, "JPEGImages", "x.jpg"), os.path.join(voc, "JPEGImages", "x.JPEG"))
    os.rename(os.path.join(voc, "JPEGImages", "y.jpg"), os.path.join(voc, "JPEGImages", "photo_y.jpg"))
    with open(os.path.join(voc, "Annotations", "y.xml"), "w") as f:
        f.write(HORSE_XML.replace("000001.jpg", "photo_y.jpg"))
    assert [i.file for i in read_voc(voc, "train").images] == [os.path.join("JPEGImages", "x.JPEG"),
                                                               os.path.join("JPEGImages", "photo_y.jpg")]
