"""Checkpoints are whole or absent; damaged ones are reported and skipped."""
import logging
import shutil

import pytest
import torch

from retrieval.engine.checkpoint import CheckpointError, CheckpointStore, digest_path, read_checkpoint, save_verified


def state(value):
    return {"weights": torch.full((4,), float(value)), "step": value}


def test_latest_whole_checkpoint_is_loaded_and_old_ones_pruned(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    for step in (1, 2, 3):
        store.save(state(step), step)
    assert [p.name for p in store.paths()] == ["step-000000002.pt", "step-000000003.pt"]
    loaded, path = store.load_latest()
    assert loaded["step"] == 3 and path.name == "step-000000003.pt"


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save(state(1), 1)
    newest = store.save(state(2), 2)
    newest.write_bytes(newest.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        loaded, path = store.load_latest()
    assert loaded["step"] == 1
    assert "step-000000002.pt is unusable" in caplog.text and "truncated or corrupted" in caplog.text


def test_checkpoint_without_digest_is_not_trusted(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(state(1), 1)
    store.save(state(2), 2).with_suffix(".sha256").unlink()
    assert store.load_latest()[0]["step"] == 1


def test_no_usable_checkpoint_gives_none(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.load_latest() is None
    only = store.save(state(1), 1)
    only.write_bytes(b"garbage")
    assert store.load_latest() is None


def test_no_temporary_files_are_left_behind(tmp_path):
    store = CheckpointStore(tmp_path)
    store.save(state(1), 1)
    assert sorted(p.name for p in store.dir.iterdir()) == ["step-000000001.pt", "step-000000001.sha256"]


OWN = {"seed": 0, "train": {"epochs": 2, "optimizer": {"lr": 0.1}}}
OTHER = {**OWN, "seed": 1}


def test_a_checkpoint_of_another_config_is_refused_naming_both_and_the_own_one_resumes(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save({**state(1), "config": OWN}, 1)
    foreign = store.save({**state(2), "config": OTHER}, 2)  # whole, digest matching, newest
    assert store.verify(foreign) is None
    with caplog.at_level(logging.WARNING):
        loaded, path = store.load_latest(config=OWN)
    assert loaded["step"] == 1 and path.name == "step-000000001.pt"
    assert f"{foreign} is unusable: it belongs to another run" in caplog.text
    assert "seed: 1 in the checkpoint, 0 in this run" in caplog.text


def test_a_model_file_placed_as_the_newest_checkpoint_is_skipped(tmp_path, caplog):
    store = CheckpointStore(tmp_path)
    store.save({**state(1), "config": OWN}, 1)
    model_file = save_verified({"model": {"w": torch.ones(3)}, "config": OWN, "num_classes": 3}, tmp_path / "model.pt")
    shutil.copy(model_file, store.dir / "step-000000009.pt")
    shutil.copy(digest_path(model_file), store.dir / "step-000000009.sha256")
    with caplog.at_level(logging.WARNING):
        loaded, path = store.load_latest(config=OWN)
    assert loaded["step"] == 1
    assert "step-000000009.pt is unusable: it is not a training checkpoint" in caplog.text


def flip_mantissa_bits(path, count):
    """Flip the lowest mantissa bit of ``count`` float32 weights in the file's bytes, as a bad disk or a
    hand would, leaving the zip structure (and its unchecked CRCs) as they were."""
    data, flipped = bytearray(path.read_bytes()), 0
    for tensor in torch.load(path, weights_only=True)["model"].values():
        raw = tensor.contiguous().numpy().tobytes()
        start = data.find(raw)
        for i in range(min(tensor.numel(), count - flipped)):
            data[start + 4 * i] ^= 1  # little-endian: the first byte holds the lowest mantissa bits
            flipped += 1
    assert flipped == count
    path.write_bytes(bytes(data))


def test_a_tampered_model_file_is_refused_naming_it(tmp_path):
    weights = {"model": {"layer.weight": torch.randn(3000, generator=torch.Generator().manual_seed(0))}}
    path = save_verified(weights, tmp_path / "model.pt")
    flip_mantissa_bits(path, 2000)
    tampered = torch.load(path, weights_only=True)["model"]["layer.weight"]  # torch itself loads it silently
    assert int((tampered != weights["model"]["layer.weight"]).sum()) == 2000
    with pytest.raises(CheckpointError, match=rf"cannot load {path}: its content does not match its digest "
                                              r"model\.sha256 \(tampered"):
        read_checkpoint(path)


def test_a_model_file_without_its_digest_is_refused_naming_it(tmp_path):
    path = save_verified({"model": {"w": torch.ones(2)}}, tmp_path / "best_model.pt")
    digest_path(path).unlink()
    with pytest.raises(CheckpointError, match=rf"cannot load {path}: no digest beside it \(best_model\.sha256"):
        read_checkpoint(path)
    assert read_checkpoint(save_verified({"model": {"w": torch.ones(2)}}, path))["model"]["w"].sum() == 2
