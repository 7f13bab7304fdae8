"""A run trusts only its own, whole files: a foreign or misplaced checkpoint is skipped, a tampered model refused.

Each test trains the tiny config for real and then puts in place what a mistake or an attacker would:
the checkpoint of another config, the run's own model.pt among the checkpoints, flipped weight bits.
"""
import hashlib
import json
import logging
import shutil

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
    if (own / "model.sha256").is_file():
        shutil.copy(own / "model.sha256", tmp_path / "model.sha256")
    flip_mantissa_bits(model, 2000)
    torch.load(model, weights_only=True)  # the premise: torch loads the tampered file without a word
    config = tmp_path / "config.yaml"
    config.write_text(dump_config(cfg))
    code = cli.main(["evaluate", str(config), "--checkpoint", str(model), "--quiet"])
    assert code == 1
    assert f"cannot load {model}: its content does not match its digest model.sha256" in capsys.readouterr().err
