"""The bundled datasets: scikit-learn digits and the procedural generator."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from retrieval.data.split import load_splits


def test_digits_is_class_disjoint_and_complete():
    splits = load_splits("digits")
    train, test = splits["train"], splits["test"]
    assert set(train.labels) == {0, 1, 2, 3, 4} and set(test.labels) == {5, 6, 7, 8, 9}
    assert len(train) + len(test) == 1797
    reference = load_digits()
    first_test = int(np.flatnonzero(reference.target >= 5)[0])
    image = test.images[0]
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], np.round(reference.images[first_test] * 255 / 16).astype(np.uint8))


def test_synthetic_is_deterministic_lazy_and_class_structured():
    a = load_splits("synthetic", num_classes=6, images_per_class=5, image_size=24, seed=1)
    b = load_splits("synthetic", num_classes=6, images_per_class=5, image_size=24, seed=1)
    assert len(a["train"]) == 15 and set(a["test"].labels) == {3, 4, 5}
    for i in range(len(a["test"])):
        assert np.array_equal(a["test"].images[i], b["test"].images[i])
    images = np.stack([a["train"].images[i] for i in range(15)]).astype(np.float64).reshape(15, -1)
    labels = a["train"].labels
    distances = ((images[:, None] - images[None]) ** 2).sum(-1)
    same = labels[:, None] == labels[None]
    off_diagonal = ~np.eye(15, dtype=bool)
    assert distances[same & off_diagonal].mean() < distances[~same].mean(), "a class is recognisable"
    assert len({images[i].tobytes() for i in range(15)}) == 15, "no two images are equal"


def test_synthetic_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="num_classes >= 2"):
        load_splits("synthetic", num_classes=1)
