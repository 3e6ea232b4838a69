"""Camera geometry: the pinhole model, Brown-Conrady distortion, Zhang's calibration and stereo rigs.

Pure numpy maths; OpenCV (imported lazily) is used only to detect chessboard corners, read images and
resample them.
"""

from cvzoo.geometry.calibration import (
    calibrate_camera,
    calibrate_from_points,
    chessboard_points,
    find_chessboard_corners,
)
from cvzoo.geometry.camera import (
    CameraIntrinsics,
    Extrinsics,
    back_project,
    camera_to_normalized,
    normalized_to_pixels,
    pixels_to_normalized,
    project_points,
)
from cvzoo.geometry.distortion import (
    distort_normalized,
    undistort_image,
    undistort_map,
    undistort_normalized,
    undistort_points,
)
from cvzoo.geometry.errors import CalibrationError, DegenerateViewsError, GeometryError
from cvzoo.geometry.homography import apply_homography, find_homography
from cvzoo.geometry.result import CalibrationResult
from cvzoo.geometry.rotation import rodrigues, rotation_to_rvec
from cvzoo.geometry.stereo import (
    StereoCalibrationResult,
    StereoRectification,
    stereo_calibrate,
    stereo_calibrate_from_points,
    stereo_rectify,
)

__all__ = [
    "CalibrationError",
    "CalibrationResult",
    "CameraIntrinsics",
    "DegenerateViewsError",
    "Extrinsics",
    "GeometryError",
    "StereoCalibrationResult",
    "StereoRectification",
    "apply_homography",
    "back_project",
    "calibrate_camera",
    "calibrate_from_points",
    "camera_to_normalized",
    "chessboard_points",
    "distort_normalized",
    "find_chessboard_corners",
    "find_homography",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "project_points",
    "rodrigues",
    "rotation_to_rvec",
    "stereo_calibrate",
    "stereo_calibrate_from_points",
    "stereo_rectify",
    "undistort_image",
    "undistort_map",
    "undistort_normalized",
    "undistort_points",
]
