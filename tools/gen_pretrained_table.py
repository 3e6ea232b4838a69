"""Write ``cvzoo/models/pretrained_table.py``: the weight sets torchvision and timm publish for cvzoo's models.

    .venv/bin/python tools/gen_pretrained_table.py   # needs the test extras (torchvision models, timm)

For every registered cvzoo architecture with a torchvision reference, each of torchvision's weight enums;
for every architecture timm also has (under cvzoo's name, the timm reference it registers, or its registered
`timm_name`: `ModelEntry.timm_arch`), each timm tag published as a hashed file URL (timm's Hugging Face
only tags carry no hash offline, so they are left out). An entry is written only after a check that costs
no download: the reference model is built exactly as its loader builds it for those weights (random
values), and its state dict must load *strictly* into cvzoo's model through the registered remaps, with
the class count that makes it fit (detectors count the background class differently). The tests check
the written table against the installed references again (URLs, hashes, class counts).
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path

import timm
import torch
import torchvision.models as tvm
from torchvision.models._api import WeightsEnum

from cvzoo.models.registry import _REGISTRY, _ensure_populated, create_model
from cvzoo.models.weights import WeightsMismatchError, load_weights

OUT = Path(__file__).resolve().parents[1] / "cvzoo" / "models" / "pretrained_table.py"
HASH = re.compile(r"-([0-9a-f]{8,64})\.(pth|pt|bin)$")


def torchvision_tag(enum_name: str) -> str:
    """``IMAGENET1K_V1 -> tv_in1k``, ``IMAGENET1K_V2 -> tv_in1k_v2``, ``COCO_V1 -> tv_coco``."""
    name = enum_name.lower().replace("imagenet1k", "in1k")
    name = re.sub(r"_v1$", "", name)
    return "tv_" + name


@contextlib.contextmanager
def no_download():
    """torchvision's builders, given weights, load them: hand them back the model's own state instead."""
    original = WeightsEnum.get_state_dict
    WeightsEnum.get_state_dict = lambda self, *a, **k: {}  # type: ignore[method-assign]
    original_load = torch.nn.Module.load_state_dict

    def load_unless_empty(self, state, *args, **kwargs):
        return None if not state else original_load(self, state, *args, **kwargs)

    torch.nn.Module.load_state_dict = load_unless_empty  # type: ignore[method-assign]
    try:
        yield
    finally:
        WeightsEnum.get_state_dict = original  # type: ignore[method-assign]
        torch.nn.Module.load_state_dict = original_load  # type: ignore[method-assign]


def fitting_classes(arch: str, state: dict, candidates: list[int]) -> int | None:
    for num_classes in candidates:
        try:
            model = create_model(arch, num_classes=num_classes)
        except (TypeError, ValueError):
            continue
        try:
            load_weights(model, state, strict=True)
            return num_classes
        except WeightsMismatchError:
            continue
    return None


def main() -> int:
    _ensure_populated()
    rows: list[tuple] = []
    defaults: dict[str, str] = {}
    for arch, entry in sorted(_REGISTRY.items()):
        started = time.time()
        if entry.reference.startswith("torchvision:"):
            reference = entry.reference.split(":", 1)[1]
            enum = tvm.get_model_weights(reference)
            for weights in enum:
                match = HASH.search(weights.url)
                if weights.meta.get("categories") is None:  # a backbone-only file (VGG16's IMAGENET1K_FEATURES)
                    print(f"skip {arch} {weights.name}: no classifier (features only)", file=sys.stderr)
                    continue
                if not match:
                    print(f"skip {arch} {weights.name}: no hash in {weights.url}", file=sys.stderr)
                    continue
                try:
                    with no_download(), torch.no_grad():
                        reference_model = tvm.get_model(reference, weights=weights)
                except Exception as err:  # a builder that needs the real file: reported, not written
                    print(f"skip {arch} {weights.name}: {type(err).__name__}: {err}", file=sys.stderr)
                    continue
                categories = len(weights.meta["categories"])
                fit = fitting_classes(arch, reference_model.state_dict(), [categories, categories - 1])
                if fit is None:
                    print(f"skip {arch} {weights.name}: its state dict does not load strictly", file=sys.stderr)
                    continue
                tag = torchvision_tag(weights.name)
                rows.append((arch, tag, weights.url, match.group(1), fit, "torchvision"))
                if weights == enum.DEFAULT:
                    defaults[arch] = tag
        timm_arch = entry.timm_arch
        timm_tags = [name for name in timm.list_pretrained(f"{timm_arch}.*") if name.split(".")[0] == timm_arch]
        # timm's default tag is the architecture's own pretrained config (list_pretrained sorts by name: its
        # first tag can be an ImageNet-21k file, e.g. mobilenetv3_large_100.miil_in21k).
        timm_default = timm.models.get_pretrained_cfg(timm_arch).tag if timm_tags else None
        timm_rows = []
        for name in timm_tags:
            cfg = timm.models.get_pretrained_cfg(name)
            match = HASH.search(cfg.url or "")
            if not match or "download.pytorch.org" in cfg.url:  # torchvision's own files are listed above
                continue
            reference_model = timm.create_model(timm_arch, pretrained=False, num_classes=cfg.num_classes)
            fit = fitting_classes(arch, reference_model.state_dict(), [cfg.num_classes])
            if fit is None:
                print(f"skip {arch} timm {name}: its state dict does not load strictly", file=sys.stderr)
                continue
            tag = "timm_" + name.split(".", 1)[1]
            rows.append((arch, tag, cfg.url, match.group(1), fit, "timm"))
            timm_rows.append(tag)
        if timm_rows:  # timm's default when it is a hashed file, else the first one written
            defaults.setdefault(arch, f"timm_{timm_default}" if f"timm_{timm_default}" in timm_rows else timm_rows[0])
        print(f"{arch}: {sum(r[0] == arch for r in rows)} weight sets ({time.time() - started:.1f} s)", file=sys.stderr)

    lines = [
        '"""The published weight sets of cvzoo\'s architectures (data; see ``cvzoo.models.pretrained``).',
        "",
        "Written by ``tools/gen_pretrained_table.py`` from the installed torchvision and timm; do not edit by hand.",
        "Each row: (architecture, tag, url, sha256 prefix, class count for cvzoo's builder, source).",
        '"""',
        "",
        "WEIGHT_SETS = [",
        *(f"    {row!r}," for row in rows),
        "]",
        "",
        "# The tag `pretrained=True` picks: torchvision's DEFAULT, else timm's default tag.",
        "DEFAULT_TAGS = {",
        *(f"    {arch!r}: {tag!r}," for arch, tag in sorted(defaults.items())),
        "}",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {len(rows)} weight sets of {len(defaults)} architectures to {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
