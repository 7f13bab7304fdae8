import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from retrieval.data.loading import ImageDataset
from retrieval.data.split import Split
from retrieval.engine.extract import extract_features
from retrieval.models import build_model


def random_images(sizes, seed=0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def dataset(images, boxes=None) -> ImageDataset:
    split = Split("test", labels=np.arange(len(images)) % 3, images=images, boxes=boxes)
    return ImageDataset(split, T.ToTensor(), crop_boxes=boxes is not None)


def model(head_args=None):
    torch.manual_seed(0)
    net = build_model("small_cnn", {"width": 4}, "embedding", head_args or {"dim": 6}, num_classes=0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
    return net


def one_by_one(net, images, scale=1.0) -> torch.Tensor:
    """Each image alone through ``embed``, in eval mode: the reference extraction."""
    net.eval()
    rows = []
    with torch.no_grad():
        for image in images:
            x = T.ToTensor()(Image.fromarray(image))[None]
            if scale != 1.0:
                x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=True)
            rows.append(net.embed(x)[0])
    return torch.stack(rows)


def test_rows_follow_dataset_order_and_the_model_mode_is_restored():
    images = random_images([(12, 12)] * 7)
    net = model().train()
    features = extract_features(net, dataset(images), batch_size=3, progress=False)
    assert net.training
    assert features.dtype == torch.float32 and features.shape == (7, 6)
    assert torch.allclose(features, one_by_one(net, images), atol=1e-6)


def test_images_of_different_sizes_and_query_box_crops():
    images = random_images([(12, 16), (10, 10), (12, 16), (14, 9)])
    boxes = np.array([[0, 0, 8, 8], [np.nan] * 4, [2, 3, 12, 9], [1, 1, 9, 13]], dtype=float)
    crops = [im if np.isnan(b).any() else im[int(b[1]):int(b[3]), int(b[0]):int(b[2])] for im, b in zip(images, boxes)]
    net = model()
    features = extract_features(net, dataset(images, boxes), batch_size=4, progress=False)
    assert torch.allclose(features, one_by_one(net, crops), atol=1e-6)


def test_multiscale_mean_is_renormalised():
    images = random_images([(16, 16)] * 5)
    net = model()
    features = extract_features(net, dataset(images), batch_size=2, scales=(1.0, 0.5), progress=False)
    mean = (one_by_one(net, images) + one_by_one(net, images, scale=0.5)) / 2
    assert torch.allclose(features, mean / mean.norm(dim=1, keepdim=True), atol=1e-6)


def test_multiscale_generalized_mean_of_nonnegative_descriptors():
    images = random_images([(16, 16)] * 4)
    net = model({"pooling": "gem", "dim": None})  # pooled ReLU features: non-negative
    scales = (1.0, 0.5, 2 ** -0.5)
    features = extract_features(net, dataset(images), scales=scales, scale_power=3.0, progress=False)
    gm = (sum(one_by_one(net, images, s).double() ** 3 for s in scales) / 3) ** (1 / 3)
    assert torch.allclose(features.double(), gm / gm.norm(dim=1, keepdim=True), atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        extract_features(model(), dataset(images), scales=scales, scale_power=3.0, progress=False)


def test_unreadable_images_are_an_error_naming_them(tmp_path):
    for name, image in zip(("a.png", "b.png"), random_images([(8, 8)] * 2)):
        Image.fromarray(image).save(tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    split = Split("db", labels=np.array([0, 1, 2]), paths=["a.png", "broken.jpg", "b.png"], root=str(tmp_path))
    images = ImageDataset(split, T.ToTensor(), bad_images="skip")
    with pytest.raises(RuntimeError, match=r"1 images of split 'db'.*broken\.jpg"):
        extract_features(model(), images, batch_size=2, progress=False)
