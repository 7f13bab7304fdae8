"""Fault injection: kills, signals, damaged checkpoints, bad images, untrusted files, run records.

Each test breaks something the way the world does (SIGKILL at a random moment, a truncated file,
a corrupt JPEG in an official-layout dataset, a pickle or YAML tag that runs code) and checks
what the README's "Faults and bad input" table promises: nothing lost, nothing silently changed, nothing executed. A run
that was interrupted is compared with an uninterrupted run of the same config: the same
metrics.json, the same per-epoch log (time aside) and the same model.pt weights, bit for bit.
"""
import csv
import errno
import importlib.util
import io
import json
import logging
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
import yaml

from retrieval import cli
from retrieval.config import ConfigError, dump_config, load_config
from retrieval.engine import checkpoint as checkpoint_module
from retrieval.engine import trainer as trainer_module
from retrieval.engine.checkpoint import CheckpointStore
from retrieval.engine.run_dir import RunDir
from retrieval.engine.trainer import Interrupted, Trainer, train
from retrieval.io import atomic_open, torch_save
from retrieval.models import BACKBONES
from retrieval.models.weights import read_state_dict

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "experiments" / "demo" / "quickstart.yaml"


def _official_layout_fixtures():
    """tests/data/fixtures.py (its writers put tiny datasets on disk in their official layouts)."""
    spec = importlib.util.spec_from_file_location("official_layout_fixtures", ROOT / "tests" / "data" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fixtures = _official_layout_fixtures()


# ----------------------------------------------------------------------------- helpers
_UNINTERRUPTED: dict[str, Path] = {}


def uninterrupted(cfg, tmp_path_factory) -> Path:
    """The run directory of ``cfg`` trained in one go (trained once per config in a session)."""
    key = dump_config(cfg)
    if key not in _UNINTERRUPTED:
        run = tmp_path_factory.mktemp("uninterrupted") / "run"
        train(cfg, run, progress=False)
        _UNINTERRUPTED[key] = run
    return _UNINTERRUPTED[key]


def outcome(run: Path) -> tuple[dict, dict, list[dict]]:
    """metrics.json, model.pt's weights and log.csv without its wall-clock column."""
    metrics = json.loads((run / "metrics.json").read_text())
    weights = torch.load(run / "model.pt", weights_only=True)["model"]
    with open(run / "log.csv") as handle:
        log = [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]
    return metrics, weights, log


def assert_same_run(run: Path, reference: Path) -> None:
    metrics, weights, log = outcome(run)
    expected_metrics, expected_weights, expected_log = outcome(reference)
    assert metrics == expected_metrics
    assert log == expected_log, "per-epoch losses or metrics differ"
    assert weights.keys() == expected_weights.keys()
    for key in weights:
        assert torch.equal(weights[key], expected_weights[key]), key


def config_file(cfg, path: Path) -> str:
    """``cfg`` written as YAML, for the command line (which loads it back to the same config)."""
    path.write_text(dump_config(cfg))
    return str(path)


def train_command(config: str, run: Path) -> list[str]:
    return ["train", config, "--output", str(run), "--quiet"]


def signal_during_step(monkeypatch, signum: int, step: int) -> None:
    """Send ``signum`` to this process while global step ``step`` (1-based) is being computed."""
    original = Trainer._step

    def step_with_signal(self, images, labels):
        if self.state["global_step"] + 1 == step:
            os.kill(os.getpid(), signum)
        return original(self, images, labels)

    monkeypatch.setattr(Trainer, "_step", step_with_signal)


def signal_during_evaluation(monkeypatch, signum: int, call: int) -> None:
    """Send ``signum`` to this process during the ``call``-th evaluation (the first: epoch 0)."""
    original, calls = trainer_module.evaluate, {"n": 0}

    def evaluate_with_signal(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "evaluate", evaluate_with_signal)


class Unhandled(Exception):
    """A signal reached the test's own handler: the code under test had none installed."""


@contextmanager
def handlers_of_last_resort():
    """SIGTERM and SIGINT raise :class:`Unhandled` unless the code under test handles them, so that
    a missing handler fails the test instead of ending (SIGTERM) or aborting (SIGINT) pytest."""
    def unhandled(signum, _frame):
        raise Unhandled(f"{signal.Signals(signum).name} arrived while no handler of the training code was installed")

    previous = {s: signal.signal(s, unhandled) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield unhandled
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def interrupted_run(cfg, run: Path, monkeypatch, step: int) -> CheckpointStore:
    """An unfinished run of ``cfg`` in ``run``, stopped by SIGTERM at global step ``step``."""
    signal_during_step(monkeypatch, signal.SIGTERM, step)
    with pytest.raises(Interrupted):
        train(cfg, run, progress=False)
    monkeypatch.undo()
    return CheckpointStore(run)


class CodeOnLoad:
    """Pickles as a call of ``exec`` that creates ``marker``: what a tampered file can hold."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def whole_steps(run: Path) -> list[int]:
    """Global steps of the checkpoints whose digest matches (safe to call while a run prunes them)."""
    store, steps = CheckpointStore(run), []
    for path in store.paths():
        try:
            if store.verify(path) is None:
                steps.append(int(path.stem.removeprefix("step-")))
        except FileNotFoundError:
            continue
    return steps


def assert_no_truncated_checkpoint(run: Path) -> None:
    """What a kill may leave: whole checkpoints with matching digests, and at most the newest one
    without its digest (killed between its rename and its digest's), itself whole; never a
    truncated or mismatching file under a checkpoint's name."""
    store = CheckpointStore(run)
    paths = store.paths()
    for path in paths:
        problem = store.verify(path)
        if problem is not None:
            assert path == paths[-1] and "no digest" in problem, f"{path.name}: {problem}"
            torch.load(path, weights_only=True)


# ----------------------------------------------------------------------------- interruptions
KILLS, KILL_BUDGET_S, FINISH_BUDGET_S = 3, 120, 240
KILL_RUN = {"train__epochs": 8, "data__batches_per_epoch": 2}
# Kill k lands a random 0-1 epoch after launch k's first new checkpoint (launch 1 waits for two, to
# time an epoch), so launch k ends by epoch k + 1 + k * f when epochs run f times faster than timed:
# the three kills land before the last epoch ends unless epochs speed up 1.3-fold during the test.
LATEST_KILL_IN_EPOCHS = 1.0


def launch(argv: list[str]) -> subprocess.Popen:
    """``python -m retrieval ARGV`` in a fresh interpreter. A forked copy of the test process would
    save the start, but OpenMP's thread pool does not survive a fork: such a child can hang in its
    first convolution."""
    return subprocess.Popen([sys.executable, "-m", "retrieval", *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def sigkill(process: subprocess.Popen) -> None:
    process.kill()
    assert process.wait() == -signal.SIGKILL


def wait_for_checkpoints(process: subprocess.Popen, run: Path, count: int, deadline: float) -> list[float]:
    """Times at which ``count`` whole checkpoints newer than the newest one now appeared."""
    newest, times = whole_steps(run)[-1:], []
    while len(times) < count and process.poll() is None and time.monotonic() < deadline:
        steps = whole_steps(run)[-1:]
        if steps > newest:
            newest = steps
            times.append(time.monotonic())
        time.sleep(0.005)
    return times


@pytest.mark.slow
@pytest.mark.timeout(KILL_BUDGET_S + FINISH_BUDGET_S + 240)  # its own budgets, plus the uninterrupted run
def test_sigkill_at_random_moments_then_the_same_command_ends_as_if_never_killed(tmp_path, tiny_config,
                                                                                   tmp_path_factory):
    """CPU time is small (about a minute); on a loaded machine the wall time stretches, so every wait has a
    budget and a slow machine gets fewer kills rather than a timeout."""
    cfg = tiny_config(**KILL_RUN)
    run = tmp_path / "run"
    argv = train_command(config_file(cfg, tmp_path / "c.yaml"), run)
    reference = uninterrupted(cfg, tmp_path_factory)
    rng, deadline, kills, epoch_s = random.Random(8), time.monotonic() + KILL_BUDGET_S, 0, None
    while kills < KILLS and time.monotonic() < deadline:
        process = launch(argv)
        try:
            times = wait_for_checkpoints(process, run, 1 if epoch_s else 2, deadline)
            if epoch_s is None and len(times) == 2:  # an epoch: its batches, evaluation and checkpoint
                epoch_s = times[1] - times[0]
            time.sleep(rng.uniform(0.0, LATEST_KILL_IN_EPOCHS) * (epoch_s or 0.0))
        finally:
            ended_by_itself = process.poll() is not None
            if not ended_by_itself:
                sigkill(process)
        if ended_by_itself:
            break
        kills += 1
        assert_no_truncated_checkpoint(run)
        assert not (run / "metrics.json").exists()
    # Up to KILLS kills within the time budget (a slow machine gets fewer); at least one must have landed.
    assert kills >= 1, f"the run ended (exit status {process.returncode}) before the first kill"
    finished = subprocess.run([sys.executable, "-m", "retrieval", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=FINISH_BUDGET_S)
    assert finished.returncode == 0, finished.stderr
    assert_same_run(run, reference)
    assert (run / "environment.json").is_file()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_epoch_checkpoints_that_step_exits_130_and_the_rerun_matches(signum, tmp_path, tiny_config,
                                                                                    tmp_path_factory, monkeypatch,
                                                                                    capsys):
    cfg = tiny_config()  # 2 epochs of 3 batches: global step 5 is batch 2 of epoch 2
    run = tmp_path / "run"
    command = train_command(config_file(cfg, tmp_path / "c.yaml"), run)
    signal_during_step(monkeypatch, signum, step=5)
    with handlers_of_last_resort() as fallback:
        assert cli.main(command) == 130
        assert signal.getsignal(signum) is fallback, "the training code put the previous handler back"
    assert "run the same command to resume" in capsys.readouterr().err
    store = CheckpointStore(run)
    newest = store.paths()[-1]
    assert newest.name == "step-000000005.pt" and store.verify(newest) is None
    saved = torch.load(newest, weights_only=True)["state"]
    assert (saved["epoch"], saved["batch"]) == (1, 2), "one epoch finished, two batches of the next"
    assert not (run / "metrics.json").exists()
    monkeypatch.undo()
    assert cli.main(command) == 0
    assert_same_run(run, uninterrupted(cfg, tmp_path_factory))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_first_evaluation_exits_130_and_keeps_it(signum, tmp_path, tiny_config,
                                                                     tmp_path_factory, monkeypatch, capsys):
    cfg = tiny_config()
    run = tmp_path / "run"
    command = train_command(config_file(cfg, tmp_path / "c.yaml"), run)
    signal_during_evaluation(monkeypatch, signum, call=1)
    with handlers_of_last_resort():
        assert cli.main(command) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    assert whole_steps(run) == [0], "the epoch-0 evaluation is kept in the step-0 checkpoint"
    monkeypatch.undo()
    assert cli.main(command) == 0
    assert_same_run(run, uninterrupted(cfg, tmp_path_factory))


def test_a_truncated_newest_checkpoint_is_named_and_the_previous_one_resumes(tmp_path, tiny_config,
                                                                             tmp_path_factory, monkeypatch,
                                                                             caplog):
    cfg, run = tiny_config(), tmp_path / "run"
    store = interrupted_run(cfg, run, monkeypatch, step=5)
    assert [p.name for p in store.paths()] == ["step-000000003.pt", "step-000000005.pt"]
    fixtures.truncate(store.paths()[-1])
    with caplog.at_level(logging.WARNING):
        train(cfg, run, progress=False)
    assert "step-000000005.pt is unusable: its content does not match its digest" in caplog.text
    assert f"resuming from {store.dir / 'step-000000003.pt'}" in caplog.text
    assert_same_run(run, uninterrupted(cfg, tmp_path_factory))


def test_temporary_files_a_kill_left_behind_are_removed_on_resume(tmp_path, tiny_config, monkeypatch):
    cfg, run = tiny_config(), tmp_path / "run"
    store = interrupted_run(cfg, run, monkeypatch, step=5)
    # What atomic_open leaves when SIGKILL lands inside torch.save: a checkpoint-sized hidden file.
    leftover = store.dir / ".step-000000006.pt.k9x2a1.tmp"
    leftover.write_bytes(store.paths()[-1].read_bytes()[:1000])
    train(cfg, run, progress=False)
    assert sorted(p.name for p in store.dir.iterdir() if p.name.startswith(".")) == []


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoints_and_the_rerun_matches(
        tmp_path, tiny_config, tmp_path_factory, monkeypatch):
    cfg, run = tiny_config(), tmp_path / "run"
    original = checkpoint_module.torch_save

    def disk_full_for_step_6(obj, path):
        if Path(path).name != "step-000000006.pt":
            return original(obj, path)
        with atomic_open(path, "wb") as handle:  # the checkpoint writer's own atomic file, filled up
            handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "torch_save", disk_full_for_step_6)
    with pytest.raises(OSError, match="No space left"):
        train(cfg, run, progress=False)
    monkeypatch.undo()
    store = CheckpointStore(run)
    assert sorted(p.name for p in store.dir.iterdir()) == [
        "step-000000000.pt", "step-000000000.sha256", "step-000000003.pt", "step-000000003.sha256"]
    assert all(store.verify(p) is None for p in store.paths())
    train(cfg, run, progress=False)
    assert_same_run(run, uninterrupted(cfg, tmp_path_factory))


def test_saving_never_prunes_the_checkpoint_a_resume_needs(tmp_path):
    """Preempted twice while a checkpoint was written (SIGTERM, then SIGKILL before the digest): two
    newer files without digest. Resumed from the older whole one, the next save must keep itself."""
    store, state = CheckpointStore(tmp_path, keep=2), {"weights": torch.arange(4.0)}
    for step in (0, 3):
        store.save(state, step)
    for step in (6, 5):  # renamed into place, killed before the digest (so before any pruning)
        torch_save(state, store.dir / f"step-{step:09d}.pt")
    assert store.load_latest()[1].name == "step-000000003.pt"
    store.save(state, 4)
    assert store.load_latest()[1].name == "step-000000004.pt"


def test_a_kill_before_the_environment_record_is_written_is_repaired_on_resume(tiny_config, tmp_path):
    cfg, run = tiny_config(), RunDir(tmp_path / "run")
    run.claim(cfg)
    (run.path / "environment.json").unlink()  # killed right after config.yaml was written
    assert run.claim(cfg), "the same config in the same directory is a resume"
    assert (run.path / "environment.json").is_file()


# ----------------------------------------------------------------------------- bad data
CUB_RUN = {"data__dataset": {"name": "cub200"}, "data__batch_size": 6, "data__samples_per_class": 2,
           "data__batches_per_epoch": 2, "eval__targets__test__protocol__args__ks": [1]}
BATCHES = 2 * 2  # epochs x batches per epoch of CUB_RUN (the tiny config trains 2 epochs)


@pytest.fixture
def cub(tmp_path, tiny_config):
    """A CUB-200-2011 folder as distributed; the 6 training images (classes 1, 2, 100; two each).

    With 2 samples from each of the 3 classes per batch of 6, every batch holds all six images once.
    """
    records = fixtures.write_cub200(tmp_path / "cub", classes=(1, 2, 100, 101, 200), per_class=2)
    images = tmp_path / "cub" / "CUB_200_2011" / "images"

    def config(**overrides):
        return tiny_config(**CUB_RUN, data__root=str(tmp_path / "cub"), **overrides)

    return config, [images / r["path"] for r in records if r["label"] <= 100]


def test_a_corrupt_training_image_is_an_error_naming_it(cub, tmp_path, capsys):
    config, train_images = cub
    fixtures.truncate(train_images[3])
    assert cli.main(train_command(config_file(config(), tmp_path / "c.yaml"), tmp_path / "run")) == 1
    error = capsys.readouterr().err
    assert "error: cannot read image" in error and train_images[3].name in error


def test_with_skip_a_corrupt_training_image_is_counted_in_metrics_json(cub, tmp_path):
    config, train_images = cub
    fixtures.truncate(train_images[3])
    train(config(data__bad_images="skip"), tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_images"] == BATCHES and metrics["skipped_batches"] == 0
    assert [name.split("/")[-1] for name in metrics["skipped_files"]] == [train_images[3].name]


def test_with_skip_a_corrupt_training_image_does_not_stop_the_whitening_fit(cub, tmp_path):
    config, train_images = cub
    fixtures.truncate(train_images[3])
    whitened = config(data__bad_images="skip", model__whitening={"name": "pca", "args": {"dim": 3}})
    result = train(whitened, tmp_path / "run", progress=False)
    assert result["skipped_images"] == BATCHES
    assert result["whitening_skipped_images"] == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == json.loads(json.dumps(result))


def test_missing_training_images_are_counted_and_named_before_training(cub, tmp_path, capsys):
    config, train_images = cub
    for path in train_images[1:3]:
        path.unlink()
    run = tmp_path / "run"
    assert cli.main(train_command(config_file(config(), tmp_path / "c.yaml"), run)) == 1
    error = capsys.readouterr().err
    assert "references 2 missing image files" in error
    assert train_images[1].name in error and train_images[2].name in error
    assert not (run / "checkpoints").exists() and not (run / "log.csv").exists(), "nothing ran before the check"


def test_missing_images_can_be_skipped_and_counted_when_asked(cub, tmp_path):
    config, train_images = cub
    for path in train_images[1:3]:
        path.unlink()
    result = train(config(data__check_files=False, data__bad_images="skip"), tmp_path / "run", progress=False)
    assert result["skipped_images"] == 2 * BATCHES


# ----------------------------------------------------------------------------- untrusted files
def test_a_checkpoint_that_would_run_code_is_refused_on_resume(tmp_path, tiny_config, tmp_path_factory,
                                                               monkeypatch, caplog):
    cfg, run = tiny_config(), tmp_path / "run"
    store = interrupted_run(cfg, run, monkeypatch, step=4)
    marker = tmp_path / "code-ran"
    forged = store.save({"model": CodeOnLoad(marker)}, 5)  # the newest, and its digest matches
    payload = forged.read_bytes()
    with caplog.at_level(logging.WARNING):
        train(cfg, run, progress=False)
    assert not marker.exists()
    assert "step-000000005.pt is unusable: it fails to load" in caplog.text
    assert f"resuming from {store.dir / 'step-000000004.pt'}" in caplog.text
    assert_same_run(run, uninterrupted(cfg, tmp_path_factory))
    torch.load(io.BytesIO(payload), weights_only=False)  # the payload is real: the unrestricted loader runs it
    assert marker.exists()


@pytest.mark.parametrize("damage", ["code", "truncated"])
def test_evaluate_refuses_a_damaged_or_code_carrying_model_file_by_name(damage, tmp_path, tiny_config,
                                                                        tmp_path_factory, capsys):
    cfg, marker, model = tiny_config(), tmp_path / "code-ran", tmp_path / "model.pt"
    if damage == "code":
        torch.save({"model": CodeOnLoad(marker)}, model)
    else:
        shutil.copy(uninterrupted(cfg, tmp_path_factory) / "model.pt", model)
        fixtures.truncate(model)
    code = cli.main(["evaluate", config_file(cfg, tmp_path / "c.yaml"), "--checkpoint", str(model), "--quiet"])
    assert code == 1 and str(model) in capsys.readouterr().err
    assert not marker.exists()


def test_a_weight_file_that_would_run_code_is_refused(tmp_path):
    marker, model = tmp_path / "code-ran", tmp_path / "weights.pth"
    torch.save({"state_dict": {"conv1.weight": CodeOnLoad(marker)}}, model)
    with pytest.raises(ValueError, match=rf"cannot read weight file {model}: UnpicklingError: Weights only"):
        read_state_dict(model)
    assert not marker.exists()


def test_torchvision_weights_from_the_hub_cache_load_without_running_code(tmp_path, monkeypatch):
    """A file in the torch hub cache is loaded without its hash being checked again (only downloads
    are), so whatever replaced it there must not run."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    marker, hub = tmp_path / "code-ran", tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried the network"))
    cached = hub / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    cached.parent.mkdir(parents=True)
    torch.save({"conv1.weight": CodeOnLoad(marker)}, cached)
    with pytest.raises(Exception) as refusal:
        BACKBONES.build("resnet18", pretrained="IMAGENET1K_V1")
    assert not marker.exists(), "loading the cached weight file ran the code inside it"
    assert isinstance(refusal.value, pickle.UnpicklingError) and "Weights only load failed" in str(refusal.value)


SYSTEM_CALL = "!!python/object/apply:os.system"
PYTHON_TAGGED = {  # python tags on a scalar, a sequence and a mapping node, at the top level and nested
    "scalar": "seed: !!python/name:os.system ''\n",
    "sequence": "seed: {tag} ['touch {marker}']\n",
    "nested-sequence": "eval:\n  targets:\n    test:\n      splits: {tag} ['touch {marker}']\n",
    "nested-mapping": "train:\n  schedule: {tag} {{args: ['touch {marker}'], milestones: [6]}}\n",
}


@pytest.mark.parametrize("form", PYTHON_TAGGED)
def test_a_config_with_a_python_tag_is_refused_naming_file_and_tag(form, tmp_path):
    marker, evil = tmp_path / "code-ran", tmp_path / "evil.yaml"
    evil.write_text(f"_base_: {QUICKSTART}\n" + PYTHON_TAGGED[form].format(tag=SYSTEM_CALL, marker=marker))
    with pytest.raises(ConfigError) as refusal:
        load_config(evil)
    assert f"{evil}:" in str(refusal.value) and "python/" in str(refusal.value)
    assert not marker.exists()


def test_python_tags_are_config_errors_on_the_command_line_and_nothing_runs(tmp_path, capsys):
    marker, evil, run = tmp_path / "code-ran", tmp_path / "evil.yaml", tmp_path / "run"
    value = f"{SYSTEM_CALL} ['touch {marker}']"
    evil.write_text(f"_base_: {QUICKSTART}\n" + PYTHON_TAGGED["scalar"])
    assert cli.main(train_command(str(evil), run)) == 2
    assert capsys.readouterr().err.startswith(f"config error: {evil}: not valid YAML")
    assert cli.main(["train", str(QUICKSTART), f"seed={value}", "--output", str(run), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("config error: override") and "python/object/apply:os.system" in error
    assert not marker.exists() and not run.exists()
    yaml.unsafe_load(f"seed: {value}")  # the tag is real: the unrestricted loader runs the command
    assert marker.exists()


# ----------------------------------------------------------------------------- traceability
def test_the_run_directory_records_versions_device_and_commit(tiny_config, tmp_path):
    RunDir(tmp_path / "run").claim(tiny_config())  # what train() does first in a new run directory
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["torchvision"] == torchvision.__version__
    assert env["cuda"] == torch.version.cuda
    assert env["gpu"] == (torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True) \
        if shutil.which("git") else None
    if head is None or head.returncode != 0:
        assert env["commit"] is None
        return
    changed = subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", "HEAD"]).returncode != 0
    assert env["commit"] == head.stdout.strip() + ("+uncommitted" if changed else "")
