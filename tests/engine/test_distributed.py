"""Two processes (gloo, CPU) see the global batch: loss and gradients equal one process on it."""
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from retrieval.config import Config, LossTerm, config_to_dict
from retrieval.engine.criterion import Criterion
from retrieval.engine.distributed import GlobalBatchCriterion, Topology, gather_features
from retrieval.engine.multistage import multistage_step
from retrieval.engine.trainer import Trainer

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


# --------------------------------------------------------------------------- every table row under DDP
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
ROW_BATCH, ROW_IMAGE = 16, 16  # 4 classes x 4 images, split 8 | 8 between the processes


def table_combinations() -> dict[str, Config]:
    """One demo-scale config per distinct (model, losses, multistage, BatchNorm) used by any table row, named by
    its first row. Whitening is learned after training, so it does not make a combination."""
    from retrieval.tables.runner import resolve_config, slug
    from retrieval.tables.spec import find_tables, load_table

    combinations: dict[str, tuple[str, Config]] = {}
    for path in find_tables(EXPERIMENTS):
        table = load_table(path)
        for row in table.rows:
            cfg = resolve_config(table, row, demo=True)
            d = config_to_dict(cfg)
            key = json.dumps([d["model"]["backbone"], d["model"]["head"], d["losses"], d["train"]["multistage"],
                              d["train"]["multistage_chunk"], d["train"]["freeze_bn"]], sort_keys=True)
            combinations.setdefault(key, (f"{path.parent.name}-{table.name}-{slug(row.name)}", cfg))
    return dict(combinations.values())


def row_batch():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(ROW_BATCH, 3, ROW_IMAGE, ROW_IMAGE, generator=generator), torch.arange(ROW_BATCH) % 4


def merge(parts: list[dict]) -> dict:
    """Outputs computed in parts, concatenated as the all-gather does."""
    return {k: [torch.cat(ts) for ts in zip(*(p[k] for p in parts))] if isinstance(parts[0][k], list)
            else torch.cat([p[k] for p in parts]) for k in parts[0] if k in ("embedding", "logits", "branches")}


def row_gradients(trainer: Trainer, images, labels, parts: int) -> dict[str, torch.Tensor]:
    """The parameter gradients of one step as the trainer computes them, the batch forwarded in ``parts``
    (each process of DDP normalises its own part when BatchNorm uses batch statistics)."""
    t = trainer.cfg.train
    trainer.optimizer.zero_grad(set_to_none=True)
    if t.multistage:
        multistage_step(trainer.net, images, labels, trainer.loss_fn, t.multistage_chunk)
    else:
        outputs = merge([trainer.net(x) for x in images.chunk(parts)])
        trainer.loss_fn(outputs, labels)[0].backward()
    named = [*trainer.model.named_parameters(),
             *(("criterion." + n, p) for n, p in trainer.criterion.named_parameters())]
    return {n: p.grad.clone() for n, p in named if p.grad is not None}


def row_trainer(cfg: Config, run_dir: Path, topology: Topology) -> Trainer:
    trainer = Trainer(cfg, run_dir, progress=False, topology=topology, device=torch.device("cpu"))
    trainer._train_mode()
    return trainer


def rows_worker(rank, port, out_dir, combinations):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    images, labels = row_batch()
    share = slice(rank * ROW_BATCH // WORLD, (rank + 1) * ROW_BATCH // WORLD)
    try:
        for name, cfg in combinations.items():
            trainer = row_trainer(cfg, Path(out_dir) / f"{name}-{rank}", Topology(rank, WORLD))
            grads = row_gradients(trainer, images[share], labels[share], parts=1)
            for _ in range(2):  # two real steps: DDP reports parameters left without a gradient at the next one
                trainer._step(images[share], labels[share])
            torch.save(grads, os.path.join(out_dir, f"{name}-{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def table_rows_under_ddp(tmp_path_factory):
    """Every combination once in two spawned processes (one spawn for all: spawning costs more than a step)."""
    combinations = table_combinations()
    out_dir = tmp_path_factory.mktemp("rows")
    mp.start_processes(rows_worker, args=(free_port(), str(out_dir), combinations), nprocs=WORLD, join=True,
                       start_method="spawn")
    return combinations, out_dir


@pytest.mark.slow
def test_every_table_rows_model_and_losses_train_under_ddp_like_one_process(table_rows_under_ddp, tmp_path):
    """CGD's "ranking only" rows crashed under DDP: no loss reads the classifier's logits."""
    combinations, out_dir = table_rows_under_ddp
    assert len(combinations) >= 20
    images, labels = row_batch()
    for name, cfg in combinations.items():
        reference = row_gradients(row_trainer(cfg, tmp_path / name, Topology()), images, labels, parts=WORLD)
        for rank in range(WORLD):
            grads = torch.load(out_dir / f"{name}-{rank}.pt", weights_only=True)
            assert grads.keys() == reference.keys(), name
            for key, grad in grads.items():
                torch.testing.assert_close(grad, reference[key], atol=1e-5, rtol=1e-4, msg=f"{name} rank {rank} {key}")
