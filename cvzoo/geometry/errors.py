"""Errors raised by :mod:`cvzoo.geometry`.

All are ``ValueError`` subclasses, so callers that only know "bad input" can catch that.
"""

from __future__ import annotations


class GeometryError(ValueError):
    """Bad input to a camera-geometry function (wrong shape, non-finite values, bad coefficients)."""


class CalibrationError(GeometryError):
    """Calibration cannot proceed: too few usable views, pattern not found, ill-conditioned views."""


class DegenerateViewsError(CalibrationError):
    """The views do not constrain the intrinsics (e.g. every board is parallel to the image plane)."""
