"""The training loop end to end on bundled digits: resume, reuse, fault policies, selection."""
import csv
import json

import pytest
import torch

from retrieval.config import ConfigError
from retrieval.engine import trainer as trainer_module
from retrieval.engine.trainer import Trainer, TrainingError, evaluate_checkpoint, train


def read_log(run_dir):
    with open(run_dir / "log.csv") as handle:
        return list(csv.DictReader(handle))


def weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_run_writes_config_log_metrics_and_model(tmp_path, tiny_config):
    result = train(tiny_config(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert {"config.yaml", "environment.json", "log.csv", "metrics.json", "model.pt"} <= {p.name for p in run.iterdir()}
    assert json.loads((run / "metrics.json").read_text()) == json.loads(json.dumps(result))
    assert result["selected_epoch"] == 2 and result["selection"] == "last epoch"
    assert 0.0 <= result["metrics"]["map"] <= 1.0 and "map" in result["epoch0"]
    log = read_log(run)
    assert [row["epoch"] for row in log] == ["0", "1", "2"]
    assert log[0]["loss"] == "" and float(log[1]["loss"]) > 0 and float(log[2]["loss/ranking"]) > 0
    env = json.loads((run / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and "commit" in env


def test_killed_after_epoch_one_resumes_to_identical_weights_and_metrics(tmp_path, tiny_config, monkeypatch):
    cfg = tiny_config()
    reference = train(cfg, tmp_path / "reference", progress=False)

    saved = Trainer._checkpoint

    def crash_after_epoch_one(self):
        saved(self)
        if self.state["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(Trainer, "_checkpoint", crash_after_epoch_one)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Trainer, "_checkpoint", saved)
    resumed = train(cfg, tmp_path / "resumed", progress=False)
    assert resumed["metrics"] == reference["metrics"]
    assert_same_weights(weights(tmp_path / "resumed"), weights(tmp_path / "reference"))


def test_same_seed_gives_identical_metrics_and_a_new_seed_differs(tmp_path, tiny_config):
    a = train(tiny_config(), tmp_path / "a", progress=False)
    b = train(tiny_config(), tmp_path / "b", progress=False)
    c = train(tiny_config(seed=1), tmp_path / "c", progress=False)
    assert a["metrics"] == b["metrics"] and a["metrics"] != c["metrics"]


def test_finished_run_is_not_retrained_and_other_config_is_refused(tmp_path, tiny_config, monkeypatch):
    train(tiny_config(), tmp_path / "run", progress=False)
    monkeypatch.setattr(Trainer, "fit", lambda self: pytest.fail("a finished run was retrained"))
    train(tiny_config(), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="different config"):
        train(tiny_config(seed=3), tmp_path / "run", progress=False)


def nan_after(monkeypatch, calls):
    """Make the criterion return NaN from its ``calls``-th call on."""
    original = trainer_module.Criterion.forward
    count = {"n": 0}

    def forward(self, outputs, labels):
        count["n"] += 1
        loss, terms = original(self, outputs, labels)
        return (loss * float("nan"), terms) if count["n"] >= calls else (loss, terms)

    monkeypatch.setattr(trainer_module.Criterion, "forward", forward)


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, tiny_config, monkeypatch):
    nan_after(monkeypatch, calls=5)
    with pytest.raises(TrainingError, match=r"non-finite loss nan at epoch 2, batch 2"):
        train(tiny_config(), tmp_path / "run", progress=False)
    kept = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert kept[-1] == "step-000000003.pt", "the end-of-epoch-1 checkpoint stays the newest"


def test_nonfinite_batches_can_be_skipped_and_are_counted(tmp_path, tiny_config, monkeypatch):
    nan_after(monkeypatch, calls=5)
    result = train(tiny_config(train__nonfinite="skip"), tmp_path / "run", progress=False)
    assert result["skipped_batches"] == 2


def test_best_epoch_selection_is_explicit(tmp_path, tiny_config):
    result = train(tiny_config(train__select="best"), tmp_path / "run", progress=False)
    best = max(float(row["map"]) for row in read_log(tmp_path / "run"))
    assert result["metrics"]["map"] == pytest.approx(best)
    assert "best epoch" in result["selection"]
    assert (tmp_path / "run" / "best_model.pt").is_file()


def test_saved_model_evaluates_to_the_reported_metrics(tmp_path, tiny_config):
    cfg = tiny_config()
    result = train(cfg, tmp_path / "run", progress=False)
    assert evaluate_checkpoint(cfg, tmp_path / "run" / "model.pt", progress=False) == result["metrics"]


def test_gradient_clipping_covers_the_criterions_parameters_too(tmp_path, tiny_config):
    cfg = tiny_config(losses={"proxies": {"name": "proxy_nca"}}, train__grad_clip=1e-3)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    batch = next(iter(trainer._loader()))
    trainer._train_mode()
    trainer._step(batch.images, batch.labels)
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert any(p is q for p in params for q in trainer.criterion.parameters())
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert total <= 1e-3 * (1 + 1e-5)
