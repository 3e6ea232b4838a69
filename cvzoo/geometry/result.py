"""The outcome of a calibration, and its YAML/JSON file format."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvzoo.geometry.camera import CameraIntrinsics, Extrinsics
from cvzoo.geometry.errors import GeometryError

FORMAT_VERSION = 1


@dataclass
class CalibrationResult:
    """Intrinsics, distortion and per-view poses estimated from several views of a planar target.

    Attributes:
        K: ``[3, 3]`` camera matrix.
        dist: ``[5]`` distortion ``(k1, k2, p1, p2, k3)`` (OpenCV order).
        rvecs: ``[M, 3]`` board -> camera rotation vectors, one per used view.
        tvecs: ``[M, 3]`` board -> camera translations (in ``square_size`` units).
        rms: root mean square reprojection error over all points, in pixels: ``sqrt(sum |e|^2 / N)``,
            OpenCV's definition (the value ``cv2.calibrateCamera`` returns).
        per_view_errors: ``[M]`` the same per view.
        image_size: ``(width, height)`` in pixels.
        used_images: names of the views used (image paths, or ``view i`` for point sets).
        rejected_images: images in which the pattern was not found.
        intrinsic_std: ``[9]`` standard deviations of ``(fx, fy, cx, cy, k1, k2, p1, p2, k3)`` (0 when fixed).
        pattern_size: inner corners ``(columns, rows)`` when calibrated from images.
        square_size: board square side in the user's unit.
        options: flags used (fix_k3, zero_tangent, ...).
        iterations: Levenberg-Marquardt iterations.
    """

    K: np.ndarray
    dist: np.ndarray
    rvecs: np.ndarray
    tvecs: np.ndarray
    rms: float
    per_view_errors: np.ndarray
    image_size: tuple[int, int]
    used_images: list[str] = field(default_factory=list)
    rejected_images: list[str] = field(default_factory=list)
    intrinsic_std: np.ndarray = field(default_factory=lambda: np.zeros(9))
    pattern_size: tuple[int, int] | None = None
    square_size: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
    iterations: int = 0

    @property
    def intrinsics(self) -> CameraIntrinsics:
        """The camera matrix as :class:`CameraIntrinsics`."""
        return CameraIntrinsics.from_matrix(self.K)

    @property
    def extrinsics(self) -> list[Extrinsics]:
        """Per-view poses as :class:`Extrinsics`."""
        return [Extrinsics.from_rvec(r, t) for r, t in zip(self.rvecs, self.tvecs, strict=True)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python representation (lists and floats) used by :meth:`save`."""
        return {
            "format_version": FORMAT_VERSION,
            "image_size": [int(s) for s in self.image_size],
            "camera_matrix": np.asarray(self.K, dtype=float).tolist(),
            "dist_coeffs": {
                "k1": float(self.dist[0]),
                "k2": float(self.dist[1]),
                "p1": float(self.dist[2]),
                "p2": float(self.dist[3]),
                "k3": float(self.dist[4]),
            },
            "rms": float(self.rms),
            "intrinsic_std": np.asarray(self.intrinsic_std, dtype=float).tolist(),
            "pattern_size": None if self.pattern_size is None else [int(s) for s in self.pattern_size],
            "square_size": float(self.square_size),
            "options": dict(self.options),
            "iterations": int(self.iterations),
            "rejected_images": list(self.rejected_images),
            "views": [
                {
                    "image": name,
                    "rvec": np.asarray(r, dtype=float).tolist(),
                    "tvec": np.asarray(t, dtype=float).tolist(),
                    "error": float(e),
                }
                for name, r, t, e in zip(
                    self.used_images, self.rvecs, self.tvecs, self.per_view_errors, strict=True
                )
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> CalibrationResult:
        """Inverse of :meth:`to_dict`.

        Raises:
            GeometryError: missing keys or wrong shapes, naming ``source``.
        """
        try:
            dist = data["dist_coeffs"]
            views = data["views"]
            result = cls(
                K=np.asarray(data["camera_matrix"], dtype=np.float64).reshape(3, 3),
                dist=np.array([dist[k] for k in ("k1", "k2", "p1", "p2", "k3")], dtype=np.float64),
                rvecs=np.asarray([v["rvec"] for v in views], dtype=np.float64).reshape(-1, 3),
                tvecs=np.asarray([v["tvec"] for v in views], dtype=np.float64).reshape(-1, 3),
                rms=float(data["rms"]),
                per_view_errors=np.asarray([v["error"] for v in views], dtype=np.float64),
                image_size=(int(data["image_size"][0]), int(data["image_size"][1])),
                used_images=[str(v["image"]) for v in views],
                rejected_images=list(data.get("rejected_images", [])),
                intrinsic_std=np.asarray(data.get("intrinsic_std", [0.0] * 9), dtype=np.float64),
                pattern_size=None if data.get("pattern_size") is None else tuple(data["pattern_size"]),
                square_size=float(data.get("square_size", 1.0)),
                options=dict(data.get("options", {})),
                iterations=int(data.get("iterations", 0)),
            )
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise GeometryError(
                f"{source}: not a cvzoo calibration file ({type(err).__name__}: {err})"
            ) from err
        return result

    def save(self, path: str | Path) -> Path:
        """Write as JSON (``.json``) or YAML (any other suffix, e.g. ``.yaml``)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        if path.suffix.lower() == ".json":
            path.write_text(json.dumps(data, indent=2) + "\n")
        else:
            import yaml

            path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> CalibrationResult:
        """Read a file written by :meth:`save` (JSON or YAML by suffix).

        Raises:
            GeometryError: the file is missing or malformed.
        """
        path = Path(path)
        if not path.is_file():
            raise GeometryError(f"{path}: calibration file not found")
        import yaml

        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as err:
            raise GeometryError(f"{path}: cannot parse calibration file: {err}") from err
        if not isinstance(data, dict):
            raise GeometryError(f"{path}: not a cvzoo calibration file (top level is not a mapping)")
        return cls.from_dict(data, source=str(path))
