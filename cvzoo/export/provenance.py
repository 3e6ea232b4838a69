"""Which checkpoint an exported ONNX file was made from: its sha256, recorded in the file's metadata.

``cvzoo export`` writes it; the onnxruntime backend of ``cvzoo predict`` compares it with the checkpoint
it is given, so that a file exported before the checkpoint was retrained (same path, new weights) or
exported from another checkpoint is never run in its place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

# The metadata_props key (onnxruntime: custom_metadata_map); named like the cvzoo_nms_* keys.
CHECKPOINT_SHA256 = "cvzoo_checkpoint_sha256"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_mismatch(metadata: Mapping[str, str], checkpoint_sha256: str) -> str | None:
    """Why an ONNX file with ``metadata`` is not the export of the checkpoint with ``checkpoint_sha256``
    (a phrase to follow the file's name), or None when it is."""
    recorded = metadata.get(CHECKPOINT_SHA256)
    if recorded is None:
        return "records no source checkpoint (exported by an older cvzoo or another tool)"
    if recorded != checkpoint_sha256:
        return (f"was exported from another checkpoint (sha256 {recorded[:12]}...; the checkpoint given has "
                f"{checkpoint_sha256[:12]}...)")
    return None
