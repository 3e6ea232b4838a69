"""SIFT keypoints (Lowe, "Distinctive Image Features from Scale-Invariant Keypoints", IJCV 2004) and
the classical matching pipeline: ratio-test / cross-checked matching, then a RANSAC homography fitted
with the normalised DLT (Hartley & Zisserman, "Multiple View Geometry", 2nd ed., alg. 4.2 and 4.6).

Detection and description use OpenCV's ``cv2.SIFT_create`` (imported lazily); matching, RANSAC and the
DLT are written here in numpy so every step is visible and testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "Matches",
    "SiftFeatures",
    "SiftInputError",
    "detect_and_describe",
    "draw_matches",
    "estimate_homography",
    "match_descriptors",
    "ransac_homography",
]


class SiftInputError(ValueError):
    """Invalid image, descriptors or point sets (the message names the offending shape)."""


@dataclass(frozen=True)
class SiftFeatures:
    """Keypoints and descriptors of one image.

    Attributes:
        points: ``[N, 2]`` float32 keypoint centres ``(x, y)`` in pixels.
        descriptors: ``[N, 128]`` float32 SIFT descriptors.
        sizes: ``[N]`` keypoint diameters in pixels (proportional to the detection scale).
        angles: ``[N]`` dominant orientations in degrees.
        responses: ``[N]`` DoG contrast of each extremum.
    """

    points: np.ndarray
    descriptors: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    responses: np.ndarray

    def __len__(self) -> int:
        return len(self.points)


class Matches(NamedTuple):
    """Index pairs ``[M, 2]`` (query index, train index), sorted by query index, and their L2 distances."""

    indices: np.ndarray
    distances: np.ndarray


def _to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3|4]`` (RGB[A]) uint8 or float in [0, 1] -> ``[H, W]`` uint8."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma
    elif image.ndim != 2:
        raise SiftInputError(f"expected a [H, W] or [H, W, 3] image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float64)
    if image.size and image.max() <= 1.0:
        image = image * 255.0  # float images in [0, 1]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def detect_and_describe(
    image: np.ndarray,
    max_features: int = 0,
    contrast_threshold: float = 0.04,
    edge_threshold: float = 10.0,
    sigma: float = 1.6,
) -> SiftFeatures:
    """Detect SIFT keypoints and compute their 128-D descriptors with OpenCV.

    Args:
        image: ``[H, W]`` grey or ``[H, W, 3]`` RGB image, uint8 or float in [0, 1].
        max_features: keep the strongest N keypoints (0 keeps all).
        contrast_threshold: DoG contrast threshold (Lowe's 0.03, scaled by OpenCV's octave layers).
        edge_threshold: principal-curvature ratio threshold that rejects edge responses (Lowe's r=10).
        sigma: blur of the base image (Lowe's 1.6).

    Returns:
        :class:`SiftFeatures` (empty arrays when nothing is found).
    """
    import cv2

    gray = _to_gray_uint8(image)
    sift = cv2.SIFT_create(
        nfeatures=max_features, contrastThreshold=contrast_threshold, edgeThreshold=edge_threshold, sigma=sigma
    )
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None:
        descriptors = np.zeros((0, 128), np.float32)
    return SiftFeatures(
        points=np.array([kp.pt for kp in keypoints], np.float32).reshape(-1, 2),
        descriptors=np.asarray(descriptors, np.float32),
        sizes=np.array([kp.size for kp in keypoints], np.float32),
        angles=np.array([kp.angle for kp in keypoints], np.float32),
        responses=np.array([kp.response for kp in keypoints], np.float32),
    )


def _distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances ``[Na, Nb]`` via |a|^2 + |b|^2 - 2ab, in float64 to limit cancellation."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    sq = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def match_descriptors(
    descriptors1: np.ndarray,
    descriptors2: np.ndarray,
    ratio: float | None = 0.75,
    cross_check: bool = False,
) -> Matches:
    """Nearest-neighbour matching with Lowe's ratio test and/or a mutual (cross) check.

    Lowe's test keeps query i's nearest neighbour j only if ``d(i, j) < ratio * d(i, second nearest)``:
    a distinctive match is much closer than the best wrong one (Lowe 2004, sec. 7.1). The cross check
    keeps (i, j) only when i is also j's nearest neighbour in the first set.

    Args:
        descriptors1: ``[N1, D]`` query descriptors.
        descriptors2: ``[N2, D]`` train descriptors.
        ratio: ratio-test threshold in (0, 1]; ``None`` disables the test. With a single train
            descriptor there is no second neighbour and the test passes.
        cross_check: also require mutual nearest neighbours.

    Returns:
        :class:`Matches` with ``indices [M, 2]`` int64 and ``distances [M]`` float64.
    """
    d1 = np.asarray(descriptors1)
    d2 = np.asarray(descriptors2)
    if d1.ndim != 2 or d2.ndim != 2 or d1.shape[1] != d2.shape[1]:
        raise SiftInputError(f"descriptors must be [N1, D] and [N2, D], got {d1.shape} and {d2.shape}")
    if ratio is not None and not 0.0 < ratio <= 1.0:
        raise SiftInputError(f"ratio must be in (0, 1] or None, got {ratio}")
    if len(d1) == 0 or len(d2) == 0:
        return Matches(np.zeros((0, 2), np.int64), np.zeros(0))
    dist = _distance_matrix(d1, d2)
    query = np.arange(len(d1))
    best = dist.argmin(axis=1)
    best_dist = dist[query, best]
    keep = np.ones(len(d1), bool)
    if ratio is not None and len(d2) > 1:
        second = np.partition(dist, 1, axis=1)[:, 1]
        keep &= best_dist < ratio * second
    if cross_check:
        keep &= dist.argmin(axis=0)[best] == query
    indices = np.stack([query[keep], best[keep]], axis=1).astype(np.int64)
    return Matches(indices, best_dist[keep])


def _check_points(pts1: np.ndarray, pts2: np.ndarray, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    p1 = np.asarray(pts1, np.float64)
    p2 = np.asarray(pts2, np.float64)
    if p1.ndim != 2 or p1.shape[1] != 2 or p1.shape != p2.shape:
        raise SiftInputError(f"point sets must both be [N, 2], got {p1.shape} and {p2.shape}")
    if len(p1) < minimum:
        raise SiftInputError(f"a homography needs at least {minimum} correspondences, got {len(p1)}")
    if not (np.isfinite(p1).all() and np.isfinite(p2).all()):
        raise SiftInputError("point sets contain NaN or infinite coordinates")
    return p1, p2


def _normalizing_transform(points: np.ndarray) -> np.ndarray:
    """``[..., N, 2] -> [..., 3, 3]``: centroid to the origin, mean distance sqrt(2) (Hartley's
    conditioning, which makes the DLT's least-squares problem well scaled)."""
    centroid = points.mean(axis=-2)
    mean_dist = np.linalg.norm(points - centroid[..., None, :], axis=-1).mean(axis=-1)
    scale = np.sqrt(2.0) / np.maximum(mean_dist, 1e-12)
    t = np.zeros(points.shape[:-2] + (3, 3))
    t[..., 0, 0] = t[..., 1, 1] = scale
    t[..., :2, 2] = -scale[..., None] * centroid
    t[..., 2, 2] = 1.0
    return t


def _apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``[..., N, 2]`` points by ``[..., 3, 3]`` homographies (inhomogeneous output)."""
    homog = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    mapped = homog @ np.swapaxes(h, -1, -2)
    w = mapped[..., 2:]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)  # a point mapped to infinity gets a huge error
    return mapped[..., :2] / w


def _dlt(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Batched normalised DLT: ``[..., N, 2]`` pairs -> ``[..., 3, 3]`` with H[2, 2] = 1 (N >= 4)."""
    t_src, t_dst = _normalizing_transform(src), _normalizing_transform(dst)
    s = _apply(t_src, src)
    d = _apply(t_dst, dst)
    x, y, u, v = s[..., 0], s[..., 1], d[..., 0], d[..., 1]
    zero, one = np.zeros_like(x), np.ones_like(x)
    # Two rows per correspondence from dst x (H src) = 0.
    rows_u = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=-1)
    rows_v = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=-1)
    a = np.concatenate([rows_u, rows_v], axis=-2)
    if a.shape[-2] < 9:  # pad to square so the SVD returns the full right null space
        a = np.concatenate([a, np.zeros(a.shape[:-2] + (9 - a.shape[-2], 9))], axis=-2)
    h_norm = np.linalg.svd(a)[2][..., -1, :].reshape(a.shape[:-2] + (3, 3))
    h = np.linalg.inv(t_dst) @ h_norm @ t_src
    scale = h[..., 2:3, 2:3]
    return h / np.where(np.abs(scale) < 1e-12, 1.0, scale)


def estimate_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography ``dst ~ H src`` from N >= 4 pairs by the normalised DLT.

    Args:
        src: ``[N, 2]`` points ``(x, y)``.
        dst: ``[N, 2]`` corresponding points.

    Returns:
        ``[3, 3]`` float64 homography scaled so that ``H[2, 2] = 1``.
    """
    src, dst = _check_points(src, dst, 4)
    return _dlt(src, dst)


def _non_degenerate(samples: np.ndarray) -> np.ndarray:
    """``[B, 4, 2] -> [B]`` True where no three of the four points are (nearly) collinear."""
    ok = np.ones(len(samples), bool)
    for i, j, k in ((0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)):
        e1 = samples[:, j] - samples[:, i]
        e2 = samples[:, k] - samples[:, i]
        area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])
        scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1)
        ok &= area > 1e-6 * np.maximum(scale, 1e-12)
    return ok


def ransac_homography(
    pts1: np.ndarray,
    pts2: np.ndarray,
    threshold: float = 3.0,
    max_iters: int = 2000,
    confidence: float = 0.995,
    seed: int | None = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Robust homography ``pts2 ~ H pts1`` by RANSAC (Fischler & Bolles 1981) on minimal 4-point samples.

    Hypotheses are drawn in batches and solved with the batched normalised DLT; a correspondence is an
    inlier when its transfer error ``|H p1 - p2|`` is below ``threshold`` pixels. The number of
    iterations adapts to the best inlier ratio w found so far, N = log(1 - confidence) / log(1 - w^4)
    (Hartley & Zisserman, alg. 4.5), capped at ``max_iters``. The winner is refitted on all its inliers
    (twice, re-scoring in between).

    Args:
        pts1: ``[N, 2]`` points in the first image.
        pts2: ``[N, 2]`` corresponding points in the second image.
        threshold: inlier transfer-error threshold in pixels.
        max_iters: maximum number of minimal samples.
        confidence: probability of having drawn one outlier-free sample, for early stopping.
        seed: seed of the sampler (``None`` for a fresh one).

    Returns:
        ``(H [3, 3] float64, inliers [N] bool)``.
    """
    p1, p2 = _check_points(pts1, pts2, 4)
    if threshold <= 0 or max_iters < 1 or not 0.0 < confidence < 1.0:
        raise SiftInputError(
            f"need threshold > 0, max_iters >= 1 and 0 < confidence < 1, got {threshold}, {max_iters}, {confidence}"
        )
    rng = np.random.default_rng(seed)
    n = len(p1)
    best_h, best_inliers, best_count = None, np.zeros(n, bool), -1
    needed, drawn, batch = max_iters, 0, 256
    while drawn < min(needed, max_iters):
        size = min(batch, max_iters - drawn)
        # Four distinct indices per sample: argsort of random keys, first four columns.
        idx = np.argsort(rng.random((size, n)), axis=1)[:, :4]
        drawn += size
        samples1, samples2 = p1[idx], p2[idx]
        ok = _non_degenerate(samples1) & _non_degenerate(samples2)
        if not ok.any():
            continue
        hs = _dlt(samples1[ok], samples2[ok])
        errors = np.linalg.norm(_apply(hs, p1[None]) - p2[None], axis=-1)  # [B, N]
        inliers = errors < threshold
        counts = inliers.sum(axis=1)
        top = int(counts.argmax())
        if counts[top] > best_count:
            best_count, best_h, best_inliers = int(counts[top]), hs[top], inliers[top]
            w = best_count / n
            needed = drawn if w >= 1.0 else int(np.ceil(np.log(1 - confidence) / np.log(1 - w**4 + 1e-300)))
    if best_h is None or best_count < 4:
        raise SiftInputError(f"RANSAC found no homography with 4+ inliers among {n} correspondences")
    for _ in range(2):  # refit on the consensus set, then re-score with the refined model
        refined = _dlt(p1[best_inliers], p2[best_inliers])
        inliers = np.linalg.norm(_apply(refined, p1) - p2, axis=-1) < threshold
        if inliers.sum() < best_count:
            break
        best_h, best_inliers, best_count = refined, inliers, int(inliers.sum())
    return best_h, best_inliers


def draw_matches(
    image1: np.ndarray,
    image2: np.ndarray,
    points1: np.ndarray,
    points2: np.ndarray,
    indices: np.ndarray,
    inliers: np.ndarray | None = None,
    thickness: int = 1,
) -> np.ndarray:
    """Side-by-side picture of two images with a line per match.

    Args:
        image1: ``[H1, W1]`` or ``[H1, W1, 3]`` RGB image (uint8 or float in [0, 1]).
        image2: ``[H2, W2]`` or ``[H2, W2, 3]`` RGB image.
        points1: ``[N1, 2]`` keypoints ``(x, y)`` of image1.
        points2: ``[N2, 2]`` keypoints of image2.
        indices: ``[M, 2]`` index pairs into points1/points2 (``Matches.indices``).
        inliers: optional ``[M]`` bool; inliers are drawn green, outliers red (all green if None).
        thickness: line thickness in pixels.

    Returns:
        ``[max(H1, H2), W1 + W2, 3]`` uint8 RGB image.
    """
    import cv2

    def rgb(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise SiftInputError(f"expected a [H, W] or [H, W, 3] image, got shape {image.shape}")
        image = image[..., :3]
        if image.dtype != np.uint8:
            image = np.clip(np.rint(image * (255.0 if image.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
        return image

    a, b = rgb(image1), rgb(image2)
    indices = np.asarray(indices, np.int64).reshape(-1, 2)
    points1, points2 = np.asarray(points1, np.float64), np.asarray(points2, np.float64)
    if len(indices) and (indices[:, 0].max() >= len(points1) or indices[:, 1].max() >= len(points2)):
        raise SiftInputError(f"match indices exceed the point counts {len(points1)} and {len(points2)}")
    if inliers is not None and len(inliers) != len(indices):
        raise SiftInputError(f"inliers has {len(inliers)} entries for {len(indices)} matches")
    canvas = np.zeros((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1] :] = b
    for m, (i, j) in enumerate(indices):
        good = inliers is None or bool(inliers[m])
        color = (0, 200, 0) if good else (220, 0, 0)
        start = tuple(int(round(v)) for v in points1[i])
        end = (int(round(points2[j][0])) + a.shape[1], int(round(points2[j][1])))
        cv2.line(canvas, start, end, color, thickness, cv2.LINE_AA)
        cv2.circle(canvas, start, 3, color, thickness, cv2.LINE_AA)
        cv2.circle(canvas, end, 3, color, thickness, cv2.LINE_AA)
    return canvas
