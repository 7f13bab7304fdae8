"""A tiny but real training config shared by the engine tests."""
from pathlib import Path

import pytest

from retrieval.config import load_config

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "demo" / "quickstart.yaml"
TINY = {
    "data.batch_size": 16, "data.samples_per_class": 4, "data.batches_per_epoch": 3,
    "data.train_transform": {"resize": 12, "crop": 10, "random_crop": True},
    "data.test_transform": {"resize": 12, "crop": 10},
    "model.backbone.args.width": 8, "model.head.args.dim": 16,
    "train.epochs": 2, "train.schedule": {"name": "constant"}, "eval.every": 1, "eval.batch_size": 512,
}


@pytest.fixture
def tiny_config():
    def make(**overrides):
        return load_config(QUICKSTART, TINY, {k.replace("__", "."): v for k, v in overrides.items()})

    return make
