import numpy as np

from cvzoo.geometry import chessboard_points
from cvzoo.geometry.refine import refine_calibration, view_residuals_and_jacobians


def test_analytic_jacobian_matches_finite_differences():
    intr = np.array([810.0, 790.0, 330.0, 250.0, -0.3, 0.12, 1e-3, -2e-3, -0.02])
    pose = np.array([0.3, -0.4, 0.2, -0.1, 0.05, 0.6])
    obj = chessboard_points((5, 4), 0.03)
    img = np.zeros((20, 2))
    _, J_int, J_pose = view_residuals_and_jacobians(intr, pose, obj, img)
    for params, J, which in ((intr, J_int, 0), (pose, J_pose, 1)):
        for j in range(len(params)):
            eps = 1e-6 * max(1.0, abs(params[j]))
            plus, minus = params.copy(), params.copy()
            plus[j] += eps
            minus[j] -= eps
            args_p = (plus, pose) if which == 0 else (intr, plus)
            args_m = (minus, pose) if which == 0 else (intr, minus)
            numeric = (
                view_residuals_and_jacobians(*args_p, obj, img)[0]
                - view_residuals_and_jacobians(*args_m, obj, img)[0]
            ) / (2 * eps)
            np.testing.assert_allclose(J[:, j], numeric, rtol=1e-5, atol=1e-5 * np.abs(numeric).max())


def test_lm_recovers_perturbed_parameters_and_respects_fixed(random_scene):
    objs, imgs, size, K, dist = random_scene(5, n_views=5, noise=0.0)
    from cvzoo.geometry import calibrate_from_points

    truth = calibrate_from_points(objs, imgs, size)
    np.testing.assert_allclose(truth.K, K, rtol=1e-8)
    assert truth.rms < 1e-8
    start = np.concatenate([[K[0, 0] * 1.05, K[1, 1] * 0.96, K[0, 2] + 15, K[1, 2] - 10], [0.0] * 5])
    poses = np.concatenate([truth.rvecs + 0.02, truth.tvecs * 1.03], axis=1)
    out = refine_calibration(start, poses, objs, imgs, fixed=["k3"])
    assert out.converged
    np.testing.assert_allclose(out.intrinsics[:4], [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], rtol=1e-7)
    np.testing.assert_allclose(out.intrinsics[4:8], dist[:4], atol=1e-7)
    assert out.intrinsics[8] == 0.0  # fixed k3 untouched
