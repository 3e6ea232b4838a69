"""Distances between the feature distributions of real and generated images: FID and KID.

Both take feature arrays ``[N, D]`` (one row per image) from any extractor. The standard figures use
Inception-v3's 2048-d pool features (``cvzoo.models.classification.inception_fid``, given pytorch-fid's
weights file); without that file the extractor is a cvzoo classifier trained on the same data
(``cvzoo.tasks.gan``), whose numbers are reported as "FID (cvzoo-<model> features)" and compare only
with each other.

- FID (Heusel et al. 2017): the Frechet distance of the two Gaussians fitted to the features,
  ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``.
- KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the cubic polynomial kernel
  ``k(x, y) = (x.y / D + 1)^3``, averaged over random subsets (its mean and standard deviation).
"""

from __future__ import annotations

import numpy as np


def _features(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"{name}: expected features [N >= 2, D], got shape {x.shape}")
    return x


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (unbiased, rows are samples) of ``features [N, D]``."""
    features = _features(features, "features")
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0:
    rounding makes the smallest ones of a rank-deficient covariance slightly negative)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """The Frechet distance of N(mu1, sigma1) and N(mu2, sigma2).

    ``Tr((S1 S2)^{1/2})`` is computed as ``Tr((A S2 A)^{1/2})`` with ``A = S1^{1/2}``: ``S1 S2`` and the
    symmetric ``A S2 A`` are similar (same eigenvalues), and the latter's eigenvalues come from a
    symmetric eigensolver, real and non-negative up to rounding, so no complex parts arise as they do in
    a general matrix square root of a nearly singular product.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"frechet_distance: means {mu1.shape} / {mu2.shape} and covariances {sigma1.shape} / "
                         f"{sigma2.shape} do not describe Gaussians of one dimension")
    root = _psd_sqrt(sigma1)
    product = root @ sigma2 @ root
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """FID of two feature arrays ``[N, D]`` and ``[M, D]``."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def _poly_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD (Gretton et al. 2012, eq. 3) of two equal-size samples with the cubic
    polynomial kernel: the within-sample sums leave out the diagonal (k(x_i, x_i))."""
    m, dim = len(x), x.shape[1]

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a @ b.T / dim + 1) ** 3

    kxx, kyy, kxy = kernel(x, x), kernel(y, y), kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 2020) -> tuple[float, float]:
    """KID: the mean and standard deviation of the unbiased squared MMD over ``subsets`` random subsets of
    ``subset_size`` rows of each array (drawn without replacement, first from ``real`` then from ``fake``,
    by ``np.random.RandomState(seed)``; torch-fidelity's defaults: 100 subsets of 1000, seed 2020)."""
    real, fake = _features(real, "real"), _features(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"kid: real features have {real.shape[1]} dimensions, fake {fake.shape[1]}")
    if subset_size < 2 or subset_size > min(len(real), len(fake)):
        raise ValueError(f"kid: subset_size={subset_size} must be in [2, {min(len(real), len(fake))}] "
                         f"(the smaller of {len(real)} real and {len(fake)} fake samples)")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = real[rng.choice(len(real), subset_size, replace=False)]
        y = fake[rng.choice(len(fake), subset_size, replace=False)]
        values[i] = _poly_mmd2(x, y)
    return float(values.mean()), float(values.std())
