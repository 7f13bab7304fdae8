"""Two processes (gloo, CPU) see the global batch: loss and gradients equal one process on it."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from retrieval.config import LossTerm
from retrieval.engine.criterion import Criterion
from retrieval.engine.distributed import GlobalBatchCriterion, Topology, gather_features
from retrieval.engine.multistage import multistage_step

LOSSES = {"quantized_ap": {"num_bins": 10}, "smooth_ap": {"temperature": 0.1}}
WORLD, BATCH = 2, 16


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 8))

    def forward(self, x):
        return {"embedding": nn.functional.normalize(self.layers(x), dim=-1)}


def batch():
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 12, generator=generator)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 0, 1, 2, 3, 0, 1, 4, 4])
    return images, labels


def gradients_single(loss_name):
    torch.manual_seed(1)
    model, criterion = TinyNet(), Criterion({"r": LossTerm(loss_name, args=LOSSES[loss_name])}, 5, 8)
    images, labels = batch()
    loss, _ = criterion(model(images), labels)
    loss.backward()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters()}


CASES = [(loss_name, multistage) for loss_name in sorted(LOSSES) for multistage in (False, True)]


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        for loss_name, multistage in CASES:
            torch.manual_seed(1)
            model = TinyNet()
            ddp = nn.parallel.DistributedDataParallel(model)
            criterion = GlobalBatchCriterion(Criterion({"r": LossTerm(loss_name, args=LOSSES[loss_name])}, 5, 8))
            images, labels = batch()
            share = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
            if multistage:
                loss, _ = multistage_step(ddp, images[share], labels[share], criterion, chunk_size=3)
            else:
                loss, _ = criterion(ddp(images[share]), labels[share])
                loss.backward()
            grads = {n: p.grad for n, p in model.named_parameters()}
            torch.save((float(loss.detach()), grads), os.path.join(out_dir, f"{loss_name}-{multistage}-{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory):
    """Run every case once in two spawned processes (spawning costs more than the cases)."""
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.start_processes(worker, args=(free_port(), str(out_dir)), nprocs=WORLD, join=True, start_method="spawn")
    return out_dir


@pytest.mark.slow
@pytest.mark.parametrize(("loss_name", "multistage"), CASES, ids=[f"{n}-{'multistage' if m else 'direct'}"
                                                                  for n, m in CASES])
def test_every_rank_gets_the_global_batch_gradient(loss_name, multistage, two_process_results):
    reference_loss, reference = gradients_single(loss_name)
    for rank in range(WORLD):
        loss, grads = torch.load(two_process_results / f"{loss_name}-{multistage}-{rank}.pt", weights_only=True)
        assert loss == pytest.approx(reference_loss, abs=1e-6), f"rank {rank}"
        for name, grad in grads.items():
            torch.testing.assert_close(grad, reference[name], atol=1e-5, rtol=1e-5, msg=f"rank {rank} {name}")


def test_gathered_features_come_back_in_item_order(monkeypatch):
    rows = torch.arange(7.0)[:, None].repeat(1, 2)
    world = 3
    shards = [rows[r::world] for r in range(world)]

    def fake_all_gather(parts, padded):
        for r, part in enumerate(parts):
            part.zero_()
            part[: len(shards[r])] = shards[r]

    monkeypatch.setattr(dist, "all_gather", fake_all_gather)
    gathered = gather_features(shards[0], 7, Topology(rank=0, world_size=world))
    assert torch.equal(gathered, rows)
