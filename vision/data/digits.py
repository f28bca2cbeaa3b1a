"""A hard, imbalanced task from real data that ships in a package: scikit-learn's 1,797
handwritten digits (8x8, 16 grey levels, from UCI), with a long tail of rare classes.

Every class keeps ``TEST_PER_CLASS`` images for a balanced test split. The training images
then shrink along a geometric tail: the most common class keeps all of its rest, the rarest
``RARE`` classes keep ``rare_fraction`` of theirs. Accuracy alone would hide how the rare
classes fare: score it with macro-F1, balanced accuracy and calibration error.
"""

from __future__ import annotations

import numpy as np

from vision.data.datasets import LabelledDataset, Split, stratified_split

TEST_PER_CLASS = 30
#: How many classes sit at the bottom of the tail.
RARE = 3


def digit_images(images: np.ndarray) -> np.ndarray:
    """sklearn's digits (N, 64) on 0..16 as uint8 RGB (N, 8, 8, 3) on 0..255, ink bright."""
    grey = np.round(np.asarray(images, np.float32).reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def imbalanced_digits(rare_fraction: float = 0.1, val_fraction: float = 0.2,
                      seed: int = 0) -> tuple[LabelledDataset, Split]:
    """(training dataset with a train/validation split, balanced test split).

    Class ``c``'s training share falls geometrically from 1 (the first class in a seeded
    order) to ``rare_fraction`` (the last ``RARE`` classes).
    """
    from sklearn.datasets import load_digits  # lazy: only this task needs scikit-learn

    digits = load_digits()
    images, labels = digit_images(digits.data), digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    order = rng.permutation(classes)
    steps = len(classes) - RARE
    shares = {int(c): rare_fraction ** min(rank / steps, 1.0) for rank, c in enumerate(order)}
    test_index, train_index = [], []
    for c in classes:
        members = rng.permutation(np.flatnonzero(labels == c))
        test_index += list(members[:TEST_PER_CLASS])
        rest = members[TEST_PER_CLASS:]
        train_index += list(rest[:max(2, int(round(len(rest) * shares[int(c)])))])
    train_index = np.array(train_index)
    train, val = stratified_split(labels[train_index], val_fraction, seed)
    names = [str(int(c)) for c in classes]
    dataset = LabelledDataset(
        names, Split(labels[train_index][train], images=images[train_index][train]),
        Split(labels[train_index][val], images=images[train_index][val]),
        source=f"sklearn digits, imbalanced (rare share {rare_fraction:g}, seed {seed})")
    test_index = np.array(test_index)
    return dataset, Split(labels[test_index], images=images[test_index])
