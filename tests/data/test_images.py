"""load_image: every documented mode conversion, with pixel values, and the corrupt-file errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cvzoo.data.images import CorruptImageError, DatasetError, is_image_file, load_image, normalize_mode


def _px(img: Image.Image) -> np.ndarray:
    return np.asarray(img)


def test_rgba_is_composited_on_black(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 128)  # half transparent: each channel * 128 / 255, rounded
    rgba[0, 1] = (255, 0, 0, 0)  # fully transparent red -> black
    rgba[1, 0] = (10, 20, 30, 255)  # opaque -> unchanged
    path = tmp_path / "a.png"
    Image.fromarray(rgba).save(path)
    out = _px(load_image(path))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [100, 50, 25]
    assert out[0, 1].tolist() == [0, 0, 0]
    assert out[1, 0].tolist() == [10, 20, 30]
    grey = _px(load_image(path, mode="L"))
    assert grey.shape == (2, 2)
    assert grey[1, 0] == Image.new("RGB", (1, 1), (10, 20, 30)).convert("L").getpixel((0, 0))


def test_la_is_composited_on_black(tmp_path):
    la = Image.fromarray(np.array([[[200, 128], [90, 255]]], np.uint8), mode="LA")
    path = tmp_path / "la.png"
    la.save(path)
    assert _px(load_image(path, "L")).tolist() == [[100, 90]]
    assert _px(load_image(path, "RGB"))[0, 0].tolist() == [100, 100, 100]


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 250, 10, 20, 30, 200, 40] + [0] * (256 * 3 - 9))
    pal.putpixel((0, 0), 1)
    pal.putpixel((1, 0), 2)
    plain = tmp_path / "p.png"
    pal.save(plain)
    assert _px(load_image(plain)).tolist() == [[[250, 10, 20], [30, 200, 40]]]
    transparent = tmp_path / "pt.png"
    pal.save(transparent, transparency=1)  # palette index 1 is transparent
    assert _px(load_image(transparent)).tolist() == [[[0, 0, 0], [30, 200, 40]]]


def test_16bit_grey_png_is_scaled_to_8bit(tmp_path):
    values = np.array([[0, 65535, 32768, 25700, 255, 256]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert _px(load_image(path, "L")).tolist() == [[0, 255, 128, 100, 0, 1]]
    assert _px(load_image(path, "RGB"))[0, 3].tolist() == [100, 100, 100]


def test_16bit_grey_matches_opencv_and_torchvision_on_every_value(tmp_path):
    import cv2
    import torch
    from torchvision.transforms.v2 import functional as TF

    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    path = tmp_path / "all16.png"
    assert cv2.imwrite(str(path), every)
    ours = _px(load_image(path, "L"))
    assert np.array_equal(ours, cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    reference = TF.to_dtype(torch.from_numpy(every)[None], torch.uint8, scale=True)[0].numpy()
    assert np.array_equal(ours, reference)


def test_32bit_int_and_float_modes():
    as_i = Image.fromarray(np.array([[-5, 0, 65535, 70000, 257]], np.int32))
    assert as_i.mode == "I"
    assert _px(normalize_mode(as_i, "L")).tolist() == [[0, 0, 255, 255, 1]]
    as_f = Image.fromarray(np.array([[-1.0, 12.4, 12.6, 300.0]], np.float32))
    assert as_f.mode == "F"
    assert _px(normalize_mode(as_f, "L")).tolist() == [[0, 12, 13, 255]]


def test_cmyk_tiff_uses_the_standard_formula(tmp_path):
    path = tmp_path / "c.tif"
    Image.new("CMYK", (1, 1), (100, 50, 0, 30)).save(path)
    # (255 - c) * (255 - k) / 255: 155*225/255 = 136.8, 205*225/255 = 180.9, 255*225/255 = 225
    assert _px(load_image(path))[0, 0].tolist() == [137, 181, 225]


def test_grey_to_rgb_and_rgb_to_grey(tmp_path):
    path = tmp_path / "g.bmp"
    Image.fromarray(np.array([[7, 250]], np.uint8)).save(path)
    assert _px(load_image(path)).tolist() == [[[7, 7, 7], [250, 250, 250]]]
    rgb_path = tmp_path / "c.png"
    rgb = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8))
    rgb.save(rgb_path)
    assert _px(load_image(rgb_path, "L")).tolist() == _px(rgb.convert("L")).tolist()


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("RGB", (4, 2), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif)
    assert load_image(path).size == (2, 4)


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_bytes() -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, data",
    [
        ("cut.jpg", _jpeg_bytes()[: len(_jpeg_bytes()) // 2]),
        ("cut.png", _png_bytes()[: len(_png_bytes()) // 2]),
        ("header_only.jpg", _jpeg_bytes()[:40]),
        ("garbage.png", b"this is not an image at all" * 10),
        ("empty.jpg", b""),
    ],
)
def test_corrupt_files_raise_naming_the_file(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CorruptImageError) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)


def test_missing_file_and_bad_mode(tmp_path):
    with pytest.raises(CorruptImageError, match="file not found"):
        load_image(tmp_path / "nope.png")
    Image.new("L", (1, 1)).save(tmp_path / "x.png")
    with pytest.raises(ValueError, match="mode"):
        load_image(tmp_path / "x.png", mode="RGBA")


def test_corrupt_image_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(CorruptImageError("/a/b.jpg", "truncated")))
    assert err.path == "/a/b.jpg" and err.reason == "truncated" and "/a/b.jpg" in str(err)


def test_extensions_case_insensitive():
    for name in ("a.JPG", "b.jpeg", "c.Png", "d.bmp", "e.TIF", "f.tiff", "g.WebP"):
        assert is_image_file(name)
    for name in ("a.txt", "b.gif", "c", "d.png.bak"):
        assert not is_image_file(name)
