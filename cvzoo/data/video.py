"""Reading and writing video clips: video files through PyAV, and folders of frame images.

A *clip source* is either a video file (``VIDEO_EXTENSIONS``) or a folder whose image files
(``IMAGE_EXTENSIONS``, sorted by name) are its frames, the two ways UCF101 and Kinetics are kept on disk
(as released, and after frame extraction). Both read as uint8 ``[T, H, W, C]`` with ``C`` 3 (``mode="RGB"``)
or 1 (``mode="L"``).

PyAV (``av``) is the optional extra ``video``: it is imported when a video file is read or written, and
its absence is an ``ImportError`` naming the package; frame folders need only Pillow.

A video file is decoded from its start to the last frame asked for (seeking to key frames would make the
frames a clip gets depend on the encoder's key-frame interval); clips of action data sets are seconds long.
A file that cannot be opened or decoded raises ``CorruptVideoError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cvzoo.data.images import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    CorruptImageError,
    CorruptVideoError,
    MissingDataError,
    load_image,
)

INSTALL_HINT = "reading and writing video files needs PyAV: pip install 'cvzoo[video]' (or pip install av)"


def require_av():
    """The ``av`` module, or an ImportError that names the package to install."""
    try:
        import av
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return av


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def frame_files(folder: str | Path) -> list[Path]:
    """The frame images of a frame folder, sorted by name (hidden files ignored)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file())


def is_clip_source(path: str | Path) -> bool:
    """A video file, or a folder holding at least one image (a frame folder)."""
    path = Path(path)
    if path.is_file():
        return is_video_file(path)
    return path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())


def _grey(frames: np.ndarray) -> np.ndarray:
    """RGB ``[T, H, W, 3]`` -> luma ``[T, H, W, 1]`` with the ITU-R 601-2 weights ``load_image(mode="L")`` uses."""
    luma = frames.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]


def _decode_video(path: Path, last: int | None) -> list[np.ndarray]:
    """RGB frames ``[H, W, 3]`` of a video file, up to index ``last`` (inclusive; None = all)."""
    av = require_av()
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptVideoError(path, "the file has no video stream")
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if last is not None and len(frames) > last:
                    break
    except CorruptVideoError:
        raise
    except FileNotFoundError:
        raise MissingDataError(f"{path}: video file not found") from None
    except (av.FFmpegError, OSError, ValueError, EOFError) as err:  # FFmpeg's errors subclass these
        raise CorruptVideoError(path, f"{type(err).__name__}: {err}") from err
    if not frames:
        raise CorruptVideoError(path, "no decodable frame")
    return frames


def count_frames(path: str | Path) -> int:
    """The number of frames of a clip source (a video file is decoded once: container headers may omit or
    misstate the count)."""
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    return len(_decode_video(path, None))


def read_clip(path: str | Path, indices: Sequence[int] | None = None, mode: str = "RGB") -> np.ndarray:
    """Frames ``indices`` (all when None) of a video file or a frame folder, uint8 ``[T, H, W, C]``.

    Raises:
        CorruptVideoError: the video cannot be decoded, or a frame image of a folder cannot.
        MissingDataError: the path does not exist.
        IndexError: an index beyond the clip's frames (the message names the file and its length).
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    path = Path(path)
    if not path.exists():
        raise MissingDataError(f"{path}: clip not found")
    if path.is_dir():
        files = frame_files(path)
        wanted = range(len(files)) if indices is None else indices
        _check_indices(path, wanted, len(files))
        try:
            frames = [np.asarray(load_image(files[i], mode)) for i in wanted]
        except CorruptImageError as err:
            raise CorruptVideoError(path, f"frame {err.path}: {err.reason}") from err
        stack = np.stack(frames)
        return stack[..., None] if mode == "L" else stack
    decoded = _decode_video(path, None if indices is None or not len(indices) else max(indices))
    wanted = range(len(decoded)) if indices is None else indices
    _check_indices(path, wanted, len(decoded))
    stack = np.stack([decoded[i] for i in wanted])
    return _grey(stack) if mode == "L" else stack


def _check_indices(path: Path, indices: Sequence[int], length: int) -> None:
    if length == 0:
        raise CorruptVideoError(path, "no frames (an empty frame folder)")
    bad = [i for i in indices if not 0 <= i < length]
    if bad:
        raise IndexError(f"{path}: frame {bad[0]} asked of a clip of {length} frames")


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8, codec: str = "libx264") -> Path:
    """Write uint8 frames ``[T, H, W]`` / ``[T, H, W, 1 or 3]`` as a video file (H.264 in yuv420p by default,
    which needs even sides; the coding is lossy, as in every action data set)."""
    av = require_av()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4):
        raise ValueError(f"frames must be uint8 [T, H, W] or [T, H, W, C], got {frames.dtype} {list(frames.shape)}")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush the encoder's delayed frames
    return path


def write_frame_folder(folder: str | Path, frames: np.ndarray) -> Path:
    """Write uint8 frames ``[T, H, W]`` / ``[T, H, W, C]`` as ``folder/000000.png`` ... (lossless)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(frames)
    for index, frame in enumerate(frames):
        Image.fromarray(frame[..., 0] if frame.ndim == 3 and frame.shape[-1] == 1 else frame).save(
            folder / f"{index:06d}.png")
    return folder


__all__ = ["INSTALL_HINT", "count_frames", "frame_files", "is_clip_source", "is_video_file", "read_clip",
           "require_av", "write_frame_folder", "write_video"]
