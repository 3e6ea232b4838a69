"""The input size an image folder trains at (data.img_size=0) does not hinge on its first file."""

import pytest
from PIL import Image

from cvzoo.config import Config, apply_overrides
from cvzoo.tasks.classification import ClassificationTask


def _folder(root, odd=None):
    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        for i in range(1, 4):
            Image.new("RGB", (40, 30), (i * 60, 0, 0)).save(root / name / f"{i}.png")
    first = root / "a" / "0.png"  # sorts before every other file
    if odd == "tiny":
        Image.new("RGB", (1, 1)).save(first)
    elif odd == "huge":
        Image.new("RGB", (3000, 2)).save(first)
    elif odd == "corrupt":
        first.write_bytes(b"not a png")
    return root


def _img_size(root, tmp_path) -> int:
    config = apply_overrides(Config(), [f"run.project={tmp_path}", f"data.source={root}", "data.workers=0",
                                        "model.name=resnet18", "train.device=cpu"])
    task = ClassificationTask(config)
    task._dataset("train", True)
    return task.img_size


@pytest.mark.parametrize("odd", ["tiny", "huge", "corrupt"])
def test_an_odd_first_file_does_not_set_the_input_size(tmp_path, odd):
    reference = _img_size(_folder(tmp_path / "plain"), tmp_path)
    assert reference == 40  # the longer side of the images, below the 224 cap
    root = _folder(tmp_path / odd, odd)
    if odd == "corrupt":  # skipped with the corrupt-image warning, as the loader does (data.strict=false)
        with pytest.warns(UserWarning, match=r"skipping corrupt image .*0\.png"):
            assert _img_size(root, tmp_path) == reference
    else:
        assert _img_size(root, tmp_path) == reference
