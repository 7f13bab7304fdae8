"""Checkpoints are whole or absent; damaged ones are reported and skipped."""
import logging

import torch

from retrieval.engine.checkpoint import CheckpointStore


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
