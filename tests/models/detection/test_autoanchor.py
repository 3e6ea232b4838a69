"""AutoAnchor: the ratio metric, best possible recall, k-means + genetic evolution on known clusters."""

from __future__ import annotations

import numpy as np
import pytest

from cvzoo.models.detection.autoanchor import (
    anchor_fitness,
    best_possible_recall,
    box_sizes_at,
    check_anchors,
    kmean_anchors,
    ratio_metric,
)

CLUSTERS = np.array([[12.0, 18.0], [60.0, 40.0], [150.0, 220.0]])


def _boxes_around(sizes: np.ndarray, per_cluster: int = 150, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([size * rng.uniform(1 - spread, 1 + spread, (per_cluster, 2)) for size in sizes])


def test_ratio_metric_and_recall_by_hand():
    wh = np.array([[10.0, 10.0], [40.0, 10.0], [100.0, 100.0]])
    anchors = np.array([[10.0, 20.0]])
    # Worst side ratios: (10/10, 10/20) -> 0.5; (10/40, 10/20) -> 0.25; (10/100, 20/100) -> 0.1.
    np.testing.assert_allclose(ratio_metric(wh, anchors)[:, 0], [0.5, 0.25, 0.1])
    # Threshold 4: a ratio must exceed 0.25, so only the first box can be learnt from this anchor.
    assert best_possible_recall(wh, anchors, 4.0) == pytest.approx(1 / 3)
    assert anchor_fitness(wh, anchors, 4.0) == pytest.approx(0.5 / 3)


def test_kmeans_recovers_known_clusters_within_10_percent():
    wh = _boxes_around(CLUSTERS)
    anchors = kmean_anchors(wh, num_anchors=3, generations=200, seed=0)
    assert anchors.shape == (3, 2)
    np.testing.assert_allclose(anchors, CLUSTERS, rtol=0.10)  # sorted by area like CLUSTERS
    assert best_possible_recall(wh, anchors) == 1.0


def test_genetic_search_improves_on_kmeans():
    # Log-uniform sizes from 4 to 400 px: Euclidean k-means favours the large boxes, while the fitness
    # is a ratio; the mutations move the anchors toward a better spread.
    rng = np.random.default_rng(3)
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (600, 2)))
    start = kmean_anchors(wh, 4, generations=0, seed=0)
    evolved = kmean_anchors(wh, 4, generations=300, seed=0)
    assert anchor_fitness(wh, evolved) > anchor_fitness(wh, start) + 0.01
    assert np.all(np.diff(evolved.prod(axis=1)) > 0)


def test_check_anchors_keeps_good_and_replaces_bad_anchors():
    wh = _boxes_around(CLUSTERS, seed=1)
    good = check_anchors(wh, CLUSTERS)
    assert good.bpr == 1.0 and good.new_anchors is None
    bad = check_anchors(wh, np.array([[400.0, 400.0], [500.0, 500.0], [600.0, 300.0]]), generations=100)
    assert bad.bpr < 0.98 and bad.new_bpr == 1.0
    np.testing.assert_allclose(bad.new_anchors, CLUSTERS, rtol=0.10)
    with pytest.raises(ValueError, match="positive"):
        check_anchors(np.array([[0.0, 5.0]]), CLUSTERS)


def test_box_sizes_follow_the_letterbox_scale():
    boxes = [np.array([[0.0, 0.0, 32.0, 16.0]]), np.array([[10.0, 10.0, 20.0, 50.0]])]
    sizes = box_sizes_at(boxes, [(320, 160), (1280, 640)], img_size=640)
    np.testing.assert_allclose(sizes, [[64.0, 32.0], [5.0, 20.0]])
