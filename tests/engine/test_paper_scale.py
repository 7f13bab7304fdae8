"""Paper-scale paths through the trainer: multistage memory bounded by the chunk, chunked reading,
non-finite gradients and updates, whitening of the selected epoch."""
import math

import numpy as np
import pytest
import torch

from benchmarks.common import RandomImages, make_cpu_peaks_visible, peak_memory_bytes
from retrieval.data.loading import ChunkedBatch, ImageDataset
from retrieval.data.split import DATASETS, Split
from retrieval.data.transforms import TransformConfig, build_transform
from retrieval.engine import trainer as trainer_module
from retrieval.engine.multistage import multistage_step
from retrieval.engine.trainer import Trainer, TrainingError, evaluate_checkpoint, train
from retrieval.losses import LOSSES
from retrieval.models import build_model


def noise_dataset(root=None, train_images: int = 64, size: int = 16, classes: int = 8):
    test = 4 * classes
    labels = np.arange(train_images + test) % classes + np.where(np.arange(train_images + test) < train_images,
                                                                 0, classes)
    full = Split("noise", labels=labels, images=RandomImages(len(labels), size))
    return {"train": full.subset(np.arange(train_images), "train"),
            "test": full.subset(np.arange(train_images, len(labels)), "test")}


@pytest.fixture
def noise(monkeypatch):
    monkeypatch.setitem(DATASETS._items, "noise", noise_dataset)


def noise_config(tiny_config, batch: int, size: int, **overrides):
    return tiny_config(**{
        "data__dataset": {"name": "noise", "args": {"train_images": batch, "size": size}},
        "data__sampler": "random", "data__batch_size": batch, "data__batches_per_epoch": None,
        "data__train_transform": {"resize": None, "crop": None, "random_crop": False, "flip": True},
        "data__test_transform": {"resize": None, "crop": None},  # the images' own size
        "model__backbone__args__width": 4, "model__head__args__dim": 16,
        "losses": {"ranking": {"name": "proxy_nca"}},  # memory O(B x classes): the images are what is measured
        "train__multistage": True, "train__multistage_chunk": 32, "train__freeze_bn": True,
        "eval__every": 100, **overrides})


@pytest.mark.slow
def test_two_multistage_steps_of_4096_images_need_the_memory_of_a_chunk(tmp_path, tiny_config, noise):
    """Peak resident memory of two whole training steps (reading and decoding included) at B = 4096 is that
    at B = 64 plus what grows with B x D (outputs, their gradients, labels); the batch's input alone would be
    4096 x 3 x 40 x 40 float32 = 75 MiB."""
    make_cpu_peaks_visible()
    size, peaks = 40, {}
    for batch in (64, 4096):
        trainer = Trainer(noise_config(tiny_config, batch, size, train__epochs=2), tmp_path / str(batch),
                          progress=False)
        trainer._train_mode()
        peaks[batch] = peak_memory_bytes(lambda t=trainer: [t._train_epoch({"signal": None}) for _ in range(2)])
        assert trainer.state["global_step"] == 2 and trainer.state["skipped_batches"] == 0
    whole_input = 4096 * 3 * size * size * 4
    assert peaks[4096] - peaks[64] < whole_input / 8, (peaks, whole_input)


def test_a_chunked_batch_trains_like_the_stacked_batch_and_skips_unreadable_images(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (12, 20, 20, 3), dtype=np.uint8)
    dataset = ImageDataset(Split("s", labels=np.arange(12) % 3, images=images),
                           build_transform(TransformConfig(crop=16, random_crop=True, flip=True)), bad_images="skip")
    keys = [(i, 100 + i) for i in range(12)]
    torch.manual_seed(0)
    model = build_model("small_cnn", {"width": 4}, "embedding", {"dim": 8}, num_classes=0).double().eval()
    loss = LOSSES.build("smooth_ap")

    def criterion(outputs, labels):
        return loss(outputs["embedding"], labels), {}

    def grads(images, labels):
        model.zero_grad(set_to_none=True)
        value, _ = multistage_step(model, images, labels, criterion, 5)
        return float(value), [p.grad.clone() for p in model.parameters()]

    readable = [i for i in range(12) if i != 4]
    stacked = torch.stack([dataset[keys[i]][0] for i in readable]).double()
    expected = grads(stacked, torch.as_tensor(dataset.split.labels[readable]))
    dataset.pil_image = lambda i, read=dataset.pil_image: _unreadable() if i == 4 else read(i)
    chunked = ChunkedBatch(_Double(dataset), keys)
    actual = grads(chunked, None)
    assert actual[0] == pytest.approx(expected[0], rel=1e-12)
    for e, a in zip(expected[1], actual[1]):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-12)
    assert chunked.skipped == [4]


def _unreadable():
    from retrieval.data.images import ImageLoadError

    raise ImageLoadError("4.jpg", "unreadable on purpose")


class _Double:
    """An ImageDataset giving float64 images (for a float64 comparison)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getitem__(self, key):
        image, label, index = self.dataset[key]
        return (None if image is None else image.double()), label, index


def all_finite(state: dict) -> bool:
    return all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v) and v.is_floating_point())


def test_an_infinite_learning_rate_is_skipped_and_no_checkpoint_holds_nan(tmp_path, tiny_config):
    """issue 16.9: train.nonfinite=skip with lr=inf saved NaN weights, then failed at evaluation."""
    result = train(tiny_config(train__nonfinite="skip", train__optimizer__lr=math.inf), tmp_path / "run",
                   progress=False)
    assert result["skipped_batches"] == 6 and all(math.isfinite(v) for v in result["metrics"].values())
    for path in [tmp_path / "run" / "model.pt", *(tmp_path / "run" / "checkpoints").glob("*.pt")]:
        saved = torch.load(path, weights_only=True)
        assert all_finite(saved["model"]), path
        for state in saved.get("optimizer", {}).get("state", {}).values():
            assert all_finite(state), path
    with pytest.raises(TrainingError, match=r"non-finite weight .* after the update"):
        train(tiny_config(train__optimizer__lr=math.inf), tmp_path / "error", progress=False)


def nan_gradient_after(monkeypatch, calls: int):
    """From the ``calls``-th criterion call on, a finite loss whose gradient is NaN (0 * d sqrt(x)/dx at 0)."""
    forward, count = trainer_module.Criterion.forward, {"n": 0}

    def poisoned(self, outputs, labels):
        loss, terms = forward(self, outputs, labels)
        count["n"] += 1
        return (loss + torch.sqrt(0.0 * loss) * 0.0 if count["n"] >= calls else loss), terms

    monkeypatch.setattr(trainer_module.Criterion, "forward", poisoned)


def test_a_nan_gradient_follows_the_nonfinite_policy(tmp_path, tiny_config, monkeypatch):
    nan_gradient_after(monkeypatch, calls=5)
    with pytest.raises(TrainingError, match=r"non-finite gradient of .* at epoch 2, batch 2"):
        train(tiny_config(), tmp_path / "error", progress=False)
    monkeypatch.undo()
    nan_gradient_after(monkeypatch, calls=5)
    result = train(tiny_config(train__nonfinite="skip"), tmp_path / "skip", progress=False)
    assert result["skipped_batches"] == 2
    assert all_finite(torch.load(tmp_path / "skip" / "model.pt", weights_only=True)["model"])


def test_best_epoch_whitening_metrics_belong_to_one_model(tmp_path, tiny_config, monkeypatch):
    """select: best reported the best epoch before whitening beside the last epoch after it."""
    evaluate, calls = Trainer._evaluate, {"n": 0}

    def last_epoch_looks_worst(self):  # makes the best epoch an earlier one, whatever training does
        metrics = evaluate(self)
        calls["n"] += 1
        return {**metrics, "map": -1.0} if calls["n"] == 3 else metrics

    monkeypatch.setattr(Trainer, "_evaluate", last_epoch_looks_worst)
    cfg = tiny_config(train__select="best", model__whitening={"name": "pca", "args": {"power": 0.5}})
    result = train(cfg, tmp_path / "run", progress=False)
    assert result["selected_epoch"] < 2
    final = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    best = torch.load(tmp_path / "run" / "best_model.pt", weights_only=True)["model"]
    for key, value in best.items():
        assert torch.equal(final[key], value), key
    monkeypatch.setattr(Trainer, "_evaluate", evaluate)
    assert evaluate_checkpoint(cfg, tmp_path / "run" / "model.pt", progress=False) == result["metrics"]
    before = evaluate_checkpoint(cfg, tmp_path / "run" / "best_model.pt", progress=False)
    assert before == {k: v for k, v in result["metrics_before_whitening"].items()}
    assert f"epoch {result['selected_epoch']}" in result["whitening"]


def test_multistage_with_batch_statistics_stops_with_a_clear_error(tmp_path, tiny_config):
    """The quick-start CNN has BatchNorm; without frozen statistics each chunk would normalise by its own."""
    with pytest.raises(TrainingError, match=r"differs between the two forward passes.*freeze_bn.*epoch 1, batch 1"):
        train(tiny_config(train__multistage=True, train__multistage_chunk=4), tmp_path / "run", progress=False)
