"""``cvzoo.data.limit.limited_indices``: the samples a split keeps under ``data.limit_train`` / ``limit_val``."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cvzoo.data.limit import limited_indices


def test_no_limit_or_a_limit_at_or_above_the_size_keeps_everything():
    assert limited_indices(10, 0) is None
    assert limited_indices(10, 10) is None
    assert limited_indices(10, 25, labels=[0] * 10) is None


def test_without_labels_the_first_samples_are_kept():
    assert limited_indices(10, 3) == [0, 1, 2]


def test_with_labels_each_class_gives_its_first_sample_in_turn():
    labels = [0, 0, 0, 0, 1, 1, 2, 2, 2]  # a sorted folder: class blocks one after the other
    # first of each class (0, 4, 6), then second of each (1, 5, 7): five of them, in dataset order
    assert limited_indices(9, 5, labels) == [0, 1, 4, 5, 6]
    # a class that runs out leaves its turns to the others
    assert limited_indices(7, 4, [0, 0, 0, 0, 0, 0, 1]) == [0, 1, 2, 6]
    # interleaved labels, as numpy: each of 10 classes keeps 3 of its 50
    many = np.tile(np.arange(10), 50)
    kept = limited_indices(len(many), 30, many)
    assert kept == sorted(kept) and Counter(many[kept].tolist()) == {c: 3 for c in range(10)}
    assert kept == list(range(30))  # the first 30 already hold 3 of each


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="cannot be negative"):
        limited_indices(10, -1)
    with pytest.raises(ValueError, match="3 labels for 10 samples"):
        limited_indices(10, 4, [0, 1, 2])
