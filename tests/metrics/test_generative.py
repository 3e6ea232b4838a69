"""FID and KID against pytorch-fid's and torch-fidelity's own functions, on the same feature arrays."""

import numpy as np
import pytest
import torch

from cvzoo.metrics.generative import fid, frechet_distance, gaussian_stats, kid

pytorch_fid = pytest.importorskip("pytorch_fid.fid_score")
torch_fidelity_kid = pytest.importorskip("torch_fidelity.metric_kid")


def _features(seed: int, n: int = 300, dim: int = 32, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)  # correlated dimensions, like network features
    return rng.normal(size=(n, dim)) @ mix + shift


@pytest.mark.parametrize("n", [300, 20])  # 20 < 32 dimensions: singular covariances
def test_fid_equals_pytorch_fid(n):
    real, fake = _features(0, n), _features(1, n, shift=0.3)
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(fake)
    np.testing.assert_allclose(s1, np.cov(real, rowvar=False))
    reference = pytorch_fid.calculate_frechet_distance(mu1, s1, mu2, s2)
    assert fid(real, fake) == pytest.approx(reference, rel=1e-6, abs=1e-6)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_one_dimensional_gaussians_by_hand():
    # N(0, 1) vs N(2, 4): (0 - 2)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 5
    assert frechet_distance(np.zeros(1), np.eye(1), np.full(1, 2.0), 4 * np.eye(1)) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="do not describe Gaussians of one dimension"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_kid_equals_torch_fidelity():
    real, fake = _features(2, 120), _features(3, 100, shift=0.2)
    reference = torch_fidelity_kid.kid_features_to_metric(
        torch.from_numpy(real), torch.from_numpy(fake), kid_subsets=10, kid_subset_size=50, verbose=False)
    mean, std = kid(real, fake, subsets=10, subset_size=50)
    assert mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-6, abs=1e-9)
    assert std == pytest.approx(reference["kernel_inception_distance_std"], rel=1e-6, abs=1e-9)
    with pytest.raises(ValueError, match="subset_size=101 must be in"):
        kid(real, fake, subsets=1, subset_size=101)
