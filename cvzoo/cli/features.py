"""``cvzoo features``: classical features from the command line.

    cvzoo features hog IMAGE --out vis.png          HOG descriptor size + glyph picture
    cvzoo features sift A B --out matches.png       SIFT matches and a RANSAC homography
    cvzoo features hog-faces                        HOG + linear classifier on LFW faces vs non-faces
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from cvzoo.cli.main import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "features",
        help="classical features: HOG, SIFT matching, HOG + linear face classifier",
        description="HOG descriptors and their glyph picture, SIFT matching with a RANSAC homography, "
        "and the HOG + linear-classifier pipeline on scikit-image's LFW subset.",
    )
    sub = parser.add_subparsers(dest="features_command", metavar="ACTION", required=True)

    hog = sub.add_parser("hog", help="HOG descriptor of an image and its glyph visualisation")
    hog.add_argument("image", help="image file")
    hog.add_argument("--out", help="write the glyph picture here (PNG/JPEG)")
    hog.add_argument("--orientations", type=int, default=9, help="orientation bins over 0-180 deg (default: 9)")
    hog.add_argument("--cell", type=int, default=8, help="pixels per (square) cell (default: 8)")
    hog.add_argument("--block", type=int, default=2, help="cells per (square) block (default: 2)")
    hog.add_argument("--norm", default="L2-Hys", choices=["L1", "L1-sqrt", "L2", "L2-Hys"],
                     help="block normalisation (default: L2-Hys)")
    hog.add_argument("--gray", action="store_true", help="use the grey image instead of the max-gradient channel")
    hog.add_argument("--trilinear", action="store_true", help="Dalal-Triggs trilinear vote interpolation")
    hog.set_defaults(func=run_hog)

    sift = sub.add_parser("sift", help="match SIFT keypoints of two images and fit a homography")
    sift.add_argument("image1", help="first image file")
    sift.add_argument("image2", help="second image file")
    sift.add_argument("--out", help="write the side-by-side match picture here")
    sift.add_argument("--ratio", type=float, default=0.75, help="Lowe's ratio threshold (default: 0.75)")
    sift.add_argument("--cross-check", action="store_true", help="keep only mutual nearest neighbours")
    sift.add_argument("--threshold", type=float, default=3.0, help="RANSAC inlier threshold, px (default: 3)")
    sift.add_argument("--max-features", type=int, default=0, help="strongest N keypoints per image (0: all)")
    sift.add_argument("--seed", type=int, default=0, help="RANSAC seed (default: 0)")
    sift.set_defaults(func=run_sift)

    faces = sub.add_parser("hog-faces", help="HOG + linear classifier on LFW faces vs non-faces (needs scikit-image)")
    faces.add_argument("--seed", type=int, default=0, help="seed of the stratified split (default: 0)")
    faces.add_argument("--test-fraction", type=float, default=0.25, help="held-out share (default: 0.25)")
    faces.add_argument("--loss", default="logistic", choices=["logistic", "hinge"], help="linear model loss")
    faces.add_argument("--cell", type=int, default=5, help="pixels per cell on the 25x25 windows (default: 5)")
    faces.add_argument("--json", action="store_true", help="print the result as JSON")
    faces.set_defaults(func=run_hog_faces)


def _load(path: str, mode: str) -> np.ndarray:
    from cvzoo.data.images import DatasetError, load_image

    if not Path(path).is_file():
        raise CliError(f"no such image file: {path}")
    try:
        return np.asarray(load_image(path, mode=mode))
    except DatasetError as err:
        raise CliError(str(err)) from None


def _save(path: str, array: np.ndarray) -> None:
    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(array).save(path)
    except (ValueError, OSError) as err:
        raise CliError(f"cannot write {path}: {err}") from None
    print(f"wrote {path}")


def run_hog(args: argparse.Namespace) -> int:
    from cvzoo.features import HOGInputError, hog, hog_visualize

    image = _load(args.image, "L" if args.gray else "RGB")
    channel_axis = None if args.gray else -1
    interpolation = "trilinear" if args.trilinear else "none"
    try:
        descriptor = hog(image, args.orientations, (args.cell, args.cell), (args.block, args.block), args.norm,
                         channel_axis=channel_axis, feature_vector=False, interpolation=interpolation)
        glyphs = hog_visualize(image, args.orientations, (args.cell, args.cell), channel_axis=channel_axis,
                               interpolation=interpolation) if args.out else None
    except HOGInputError as err:
        raise CliError(f"{args.image}: {err}") from None
    rows, cols = descriptor.shape[:2]
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]} px -> {rows}x{cols} blocks of "
          f"{args.block}x{args.block} cells x {args.orientations} bins = {descriptor.size} features")
    if glyphs is not None:
        _save(args.out, glyph_picture(glyphs))
    return 0


def run_sift(args: argparse.Namespace) -> int:
    from cvzoo.features import (
        SiftInputError,
        detect_and_describe,
        draw_matches,
        match_descriptors,
        ransac_homography,
    )

    image1, image2 = _load(args.image1, "RGB"), _load(args.image2, "RGB")
    try:
        f1 = detect_and_describe(image1, max_features=args.max_features)
        f2 = detect_and_describe(image2, max_features=args.max_features)
        matches = match_descriptors(f1.descriptors, f2.descriptors, ratio=args.ratio, cross_check=args.cross_check)
    except SiftInputError as err:
        raise CliError(str(err)) from None
    print(f"keypoints: {len(f1)} in {args.image1}, {len(f2)} in {args.image2}; matches: {len(matches.indices)}")
    inliers = None
    if len(matches.indices) >= 4:
        try:
            h, inliers = ransac_homography(f1.points[matches.indices[:, 0]], f2.points[matches.indices[:, 1]],
                                           threshold=args.threshold, seed=args.seed)
        except SiftInputError as err:
            print(f"homography: none ({err})")
        else:
            print(f"homography inliers: {int(inliers.sum())}/{len(inliers)}")
            print("H =\n" + np.array2string(h, precision=5, suppress_small=True))
    else:
        print("homography: none (fewer than 4 matches)")
    if args.out:
        _save(args.out, draw_matches(image1, image2, f1.points, f2.points, matches.indices, inliers))
    return 0


def run_hog_faces(args: argparse.Namespace) -> int:
    from cvzoo.features import run_hog_pipeline

    try:
        from skimage.data import lfw_subset  # the dataset ships with scikit-image (a test/benchmark extra)
    except ImportError:
        raise CliError("hog-faces needs scikit-image for its LFW subset: pip install scikit-image") from None
    if not 0.0 < args.test_fraction < 1.0:
        raise CliError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    images = lfw_subset()  # 100 faces then 100 non-faces, 25x25 floats in [0, 1]
    labels = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    try:
        result = run_hog_pipeline(images, labels, test_fraction=args.test_fraction, seed=args.seed, loss=args.loss,
                                  hog_kwargs={"pixels_per_cell": (args.cell, args.cell)})
    except ValueError as err:
        raise CliError(str(err)) from None
    summary = {
        "train": result.n_train, "test": result.n_test, "features": result.n_features,
        "train_accuracy": result.train_accuracy, "test_accuracy": result.test_accuracy,
        "loss": args.loss, "seed": args.seed,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"HOG ({result.n_features} features) + {args.loss} regression on LFW faces vs non-faces, seed {args.seed}")
        print(f"train {result.n_train}: accuracy {result.train_accuracy:.3f}")
        print(f"test  {result.n_test}: accuracy {result.test_accuracy:.3f}")
    return 0


def glyph_picture(glyphs: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """``uint8`` picture of HOG glyphs: white at the ``percentile``-th brightest drawn pixel (brighter ones
    clipped), through a square-root tone curve.

    Scaling by the maximum leaves the picture nearly black: a few strong edges (where segments of
    neighbouring bins overlap) are many times brighter than the typical glyph, whose median is ~3% of the
    maximum on a photo, which is what scikit-image's example handles with
    ``rescale_intensity(in_range=(0, 10))``. The square root lifts the faint glyphs of weak gradients.
    """
    drawn = glyphs[glyphs > 0]
    if drawn.size == 0:
        return np.zeros(glyphs.shape, dtype=np.uint8)
    white = float(np.percentile(drawn, percentile))
    return (255 * np.sqrt(np.clip(glyphs / white, 0.0, 1.0))).astype(np.uint8)
