"""ImageDataset: sources, box crops, per-item seeds and the bad-image policies."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from retrieval.data.images import ImageLoadError
from retrieval.data.loading import ImageDataset, collate_skipping
from retrieval.data.split import Split
from retrieval.data.transforms import TransformConfig, build_transform


@pytest.fixture
def files(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.jpg")
    (tmp_path / "2.jpg").write_bytes((tmp_path / "2.jpg").read_bytes()[:60])  # truncated JPEG
    return tmp_path


def split(root, boxes=None):
    return Split("s", labels=[0, 0, 1], paths=["0.jpg", "1.jpg", "2.jpg"], root=str(root), boxes=boxes)


def test_bad_image_is_an_error_naming_the_file_by_default(files):
    data = ImageDataset(split(files), T.ToTensor())
    assert data[0][0].shape == (3, 20, 30)
    with pytest.raises(ImageLoadError, match=r"2\.jpg"):
        data[2]


def test_skip_policy_drops_and_reports_the_bad_image(files):
    data = ImageDataset(split(files), T.ToTensor(), bad_images="skip")
    batch = collate_skipping([data[0], data[1], data[2]])
    assert batch.images.shape == (2, 3, 20, 30) and batch.indices.tolist() == [0, 1] and batch.skipped == [2]


def test_boxes_crop_only_rows_that_have_one(files):
    boxes = np.array([[2, 3, 12, 8], [np.nan] * 4, [np.nan] * 4])
    data = ImageDataset(split(files, boxes), T.ToTensor(), crop_boxes=True)
    assert data[0][0].shape == (3, 5, 10) and data[1][0].shape == (3, 20, 30)


def test_item_seed_fixes_the_augmentation():
    images = np.random.default_rng(0).integers(0, 255, (1, 32, 32, 3), dtype=np.uint8)
    transform = build_transform(TransformConfig(crop=16, random_crop=True, flip=True))
    data = ImageDataset(Split("s", labels=[0], images=images), transform)
    torch.manual_seed(123)
    assert torch.equal(data[(0, 7)][0], data[(0, 7)][0])
    assert any(not torch.equal(data[(0, 7)][0], data[(0, s)][0]) for s in range(8, 16))


def test_reading_a_seeded_item_leaves_the_global_random_state_alone():
    """Reseeding the global generator per item made the state a checkpoint saves meaningless."""
    images = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    transform = build_transform(TransformConfig(crop=16, random_crop=True, flip=True))
    data = ImageDataset(Split("s", labels=[0, 1], images=images), transform)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = data[(1, 9)][0]
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(6)
    assert torch.equal(data[(1, 9)][0], first)  # the item's augmentation depends on its seed only


def test_longer_side_cap_only_shrinks():
    transform = build_transform(TransformConfig(max_size=16))
    big = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    small = Image.fromarray(np.zeros((6, 8, 3), np.uint8))
    assert transform(big).shape == (3, 8, 16) and transform(small).shape == (3, 6, 8)


def test_resize_to_an_exact_size_or_by_the_shorter_side():
    image = Image.fromarray(np.zeros((20, 40, 3), np.uint8))
    assert build_transform(TransformConfig(resize=(12, 12)))(image).shape == (3, 12, 12)
    assert build_transform(TransformConfig(resize=10))(image).shape == (3, 10, 20)
