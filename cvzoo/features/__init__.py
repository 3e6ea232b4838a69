"""Classical features: HOG (Dalal & Triggs 2005), SIFT matching + RANSAC homographies, HOG + linear
classifier. See docs/features.md."""

from cvzoo.features.hog import HOGInputError, cell_histograms, draw_hog_glyphs, hog, hog_visualize
from cvzoo.features.hog_classifier import (
    HOGPipelineResult,
    LinearClassifier,
    hog_features,
    run_hog_pipeline,
    stratified_split,
    train_linear_classifier,
)
from cvzoo.features.sift import (
    Matches,
    SiftFeatures,
    SiftInputError,
    detect_and_describe,
    draw_matches,
    estimate_homography,
    match_descriptors,
    ransac_homography,
)

__all__ = [
    "HOGInputError",
    "HOGPipelineResult",
    "LinearClassifier",
    "Matches",
    "SiftFeatures",
    "SiftInputError",
    "cell_histograms",
    "detect_and_describe",
    "draw_hog_glyphs",
    "draw_matches",
    "estimate_homography",
    "hog",
    "hog_features",
    "hog_visualize",
    "match_descriptors",
    "ransac_homography",
    "run_hog_pipeline",
    "stratified_split",
    "train_linear_classifier",
]
