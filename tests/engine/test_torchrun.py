"""``torchrun -m retrieval train`` with 2 CPU processes trains like one process on the same global batches."""
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import QUICKSTART, TINY

# Frozen BatchNorm statistics: with batch statistics each process would normalise its own half-batch.
OVERRIDES = [f"{key}={json.dumps(value)}" for key, value in {**TINY, "train.freeze_bn": True}.items()]


def train(command, output, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, "train", str(QUICKSTART), *OVERRIDES, "--output", str(output), "--quiet"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((output / "metrics.json").read_text()), torch.load(output / "model.pt", weights_only=True)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    one, one_model = train([sys.executable, "-m", "retrieval"], tmp_path / "one", tmp_path)
    two, two_model = train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "retrieval"], tmp_path / "two", tmp_path)
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, abs=1e-3), key
    for key, tensor in one_model["model"].items():
        torch.testing.assert_close(two_model["model"][key], tensor, atol=1e-4, rtol=1e-3, msg=key)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
