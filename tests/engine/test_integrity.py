"""A run trusts only its own, whole files: a foreign or misplaced checkpoint is skipped, a tampered model refused.

Each test trains the tiny config for real and then puts in place what a mistake or an attacker would:
the checkpoint of another config, the run's own model.pt among the checkpoints, flipped weight bits.
"""
import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from retrieval import cli
from retrieval.config import dump_config
from retrieval.engine.trainer import train

pytestmark = pytest.mark.slow


_FINISHED: dict = {}


@pytest.fixture
def runs(tiny_config, tmp_path_factory):
    """Two finished runs of the tiny config that differ only in their seed (trained once per session)."""
    for seed in (0, 1):
        if seed not in _FINISHED:
            cfg, run = tiny_config(seed=seed), tmp_path_factory.mktemp(f"seed{seed}") / "run"
            train(cfg, run, progress=False)
            _FINISHED[seed] = cfg, run
    return _FINISHED


def unfinished_copy(run, destination):
    """The run as a kill after its second-to-last checkpoint would leave it: no metrics, no model, no newest."""
    shutil.copytree(run, destination)
    for name in ("metrics.json", "model.pt", "model.sha256"):
        (destination / name).unlink(missing_ok=True)
    newest = sorted((destination / "checkpoints").glob("step-*.pt"))[-1]
    newest.unlink()
    newest.with_suffix(".sha256").unlink()
    return newest.name


def put_in_place(source, checkpoints, name):
    """Copy ``source`` in as checkpoint ``name``, with a matching digest: the file is whole, only not this run's."""
    shutil.copy(source, checkpoints / name)
    (checkpoints / name).with_suffix(".sha256").write_text(hashlib.sha256(source.read_bytes()).hexdigest() + "\n")


@pytest.mark.parametrize("intruder", ["another-seed", "model-file"])
def test_a_foreign_newest_checkpoint_is_skipped_naming_it_and_the_own_one_resumes(runs, tmp_path, caplog,
                                                                                    intruder):
    cfg, own = runs[0]
    run = tmp_path / "run"
    newest = unfinished_copy(own, run)
    source = runs[1][1] / "checkpoints" / newest if intruder == "another-seed" else own / "model.pt"
    put_in_place(source, run / "checkpoints", newest)
    with caplog.at_level(logging.WARNING):
        result = train(cfg, run, progress=False)
    assert result["metrics"] == json.loads((own / "metrics.json").read_text())["metrics"]
    reason = ("it belongs to another run: its config differs from this run's (seed: 1 in the checkpoint, 0 in this run)"
              if intruder == "another-seed" else "it is not a training checkpoint")
    assert f"checkpoint {run / 'checkpoints' / newest} is unusable: {reason}" in caplog.text
    assert "resuming from" in caplog.text and "step-000000003.pt" in caplog.text


def flip_mantissa_bits(path, count):
    """Flip the lowest mantissa bit of ``count`` float32 weights in the file's bytes, leaving the zip's
    structure and CRCs (which torch.load does not check) as they were."""
    data, flipped = bytearray(path.read_bytes()), 0
    for tensor in torch.load(path, weights_only=True)["model"].values():
        if tensor.dtype != torch.float32 or flipped == count:
            continue
        start = data.find(tensor.contiguous().numpy().tobytes())
        for i in range(min(tensor.numel(), count - flipped)):
            data[start + 4 * i] ^= 1  # little-endian: the first byte holds the lowest mantissa bits
            flipped += 1
    assert flipped == count
    path.write_bytes(bytes(data))


def test_evaluate_refuses_a_model_file_with_flipped_weight_bits_naming_it(runs, tmp_path, capsys):
    cfg, own = runs[0]
    model = tmp_path / "model.pt"
    shutil.copy(own / "model.pt", model)
    shutil.copy(own / "model.sha256", tmp_path / "model.sha256")  # the digest of the untampered file
    flip_mantissa_bits(model, 2000)
    torch.load(model, weights_only=True)  # the premise: torch loads the tampered file without a word
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(cfg))
    code = cli.main(["evaluate", str(config), "--checkpoint", str(model), "--quiet"])
    assert code == 1
    assert f"cannot load {model}: its content does not match its digest model.sha256" in capsys.readouterr().err


# ----------------------------------------------------------------------------- images
def _fixtures():
    """tests/data/fixtures.py: writers of datasets in their official layouts."""
    spec = importlib.util.spec_from_file_location("official_layout_fixtures",
                                                  Path(__file__).resolve().parents[1] / "data" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cub(tmp_path, tiny_config):
    """A CUB-200-2011 folder as distributed (train: classes 1, 2, 100; test: 101, 200; two images each),
    the config (with overrides) that trains on it, and its image files by split."""
    records = _fixtures().write_cub200(tmp_path / "cub", classes=(1, 2, 100, 101, 200), per_class=2)
    images = tmp_path / "cub" / "CUB_200_2011" / "images"

    def config(**overrides):
        return tiny_config(data__dataset={"name": "cub200"}, data__root=str(tmp_path / "cub"), data__batch_size=6,
                           data__samples_per_class=2, data__batches_per_epoch=2,
                           eval__targets__test__protocol__args__ks=[1], **overrides)

    return config, {split: [images / r["path"] for r in records if (r["label"] <= 100) == (split == "train")]
                 for split in ("train", "test")}


def test_with_skip_a_decompression_bomb_among_the_training_images_is_skipped_and_named(cub, tmp_path):
    config, images = cub
    _fixtures().write_decompression_bomb(images["train"][3])  # 15000 x 15000 pixels, 27 kB
    metrics = train(config(data__bad_images="skip"), tmp_path / "run", progress=False)
    assert [name.split("/")[-1] for name in metrics["skipped_files"]] == [images["train"][3].name]


def test_every_unreadable_evaluation_image_is_named_with_its_reason(cub, tmp_path, capsys):
    config, images = cub
    _fixtures().truncate(images["test"][0])
    _fixtures().write_decompression_bomb(images["test"][2])
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config()))
    assert cli.main(["train", str(path), "--output", str(tmp_path / "run"), "--quiet"]) == 1
    error = capsys.readouterr().err
    assert "2 images of split 'test' could not be read" in error
    assert f"cannot read image {images['test'][0]}: OSError" in error
    assert f"cannot read image {images['test'][2]}: DecompressionBombError" in error
