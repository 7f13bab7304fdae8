"""The training loop: config in, trained model, log and metrics out; resumable at any step."""
from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from retrieval.config import Config, ConfigError, config_to_dict
from retrieval.config.diff import model_mismatch
from retrieval.data.loading import ImageDataset, chunked_batches, collate_skipping
from retrieval.data.samplers import ClassBalancedBatchSampler, RandomBatchSampler
from retrieval.data.split import Split
from retrieval.data.transforms import build_transform
from retrieval.engine.checkpoint import CheckpointStore, read_checkpoint, save_verified
from retrieval.engine.criterion import Criterion
from retrieval.engine.distributed import (
    GlobalBatchCriterion,
    Topology,
    barrier,
    freeze_unread_parameters,
    init_from_environment,
    resolve_device,
    wrap_model,
)
from retrieval.engine.evaluate import evaluate, pick_split, sharded_features, splits_of
from retrieval.engine.nonfinite import GuardedParameters
from retrieval.engine.optim import build_optimizer, build_schedule
from retrieval.engine.run_dir import RunDir
from retrieval.engine.run_log import EpochLog

log = logging.getLogger(__name__)
FINAL_MODEL, BEST_MODEL = "model.pt", "best_model.pt"
TRAINING_COLUMNS = {"epoch", "loss", "lr", "seconds"}
MAX_NAMED_SKIPS = 10  # metrics.json names this many of the unreadable training images it skipped


def evaluation_columns(row: dict) -> list[str]:
    """The metric columns of a log row (the rest are epoch, losses, learning rate and time)."""
    return [k for k in row if k not in TRAINING_COLUMNS and not k.startswith("loss/")]


class TrainingError(RuntimeError):
    """A run that cannot go on (non-finite loss, missing files); the last good checkpoint is kept."""


class Interrupted(RuntimeError):
    """SIGINT/SIGTERM arrived; a checkpoint of the current step was written."""


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def freeze_batchnorm(model: nn.Module) -> None:
    """Keep BatchNorm running statistics fixed (their affine weights still train)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def contiguous_labels(split: Split) -> tuple[Split, int]:
    """The split with labels renumbered 0..C-1 (classifier heads need that), and C."""
    classes, inverse = np.unique(split.labels, return_inverse=True)
    relabelled = split.subset(np.arange(len(split)))
    relabelled.labels = inverse.astype(np.int64)
    return relabelled, len(classes)


def report_missing_files(split: Split) -> None:
    """Fail before training when the split names files that are not there."""
    from retrieval.data.verify import check_split_files

    count, names = check_split_files(split)
    if count:
        raise TrainingError(f"split {split.name!r} references {count} missing image files under {split.root}, "
                            f"e.g. {', '.join(names)}; re-run the dataset's preparation script, or set "
                            "data.check_files=false (and data.bad_images=skip) to train without them")


@contextmanager
def stop_on_signals():
    """Turn SIGINT/SIGTERM into a flag the loop checks between steps."""
    flag = {"signal": None}

    def handler(signum, _frame):
        flag["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resume_position(state: dict, epochs: int) -> str:
    """Where a checkpoint's ``state`` stands in a run of ``epochs`` epochs, e.g. "after epoch 3 of 3"."""
    if state["batch"] == 0:
        return f"after epoch {state['epoch']} of {epochs}" if state["epoch"] else "after the epoch-0 evaluation"
    return f"epoch {state['epoch'] + 1} of {epochs}, after batch {state['batch']}"


def embedding_dim(model: nn.Module, image_size: int, device) -> int:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model(torch.zeros(2, 3, image_size, image_size, device=device))["embedding"].shape[1]
    model.train(was_training)
    return int(dim)


def model_for(cfg: Config, num_classes: int, device) -> nn.Module:
    from retrieval.models import build_model

    m = cfg.model
    model = build_model(m.backbone.name, m.backbone.args, m.head.name, m.head.args, num_classes).to(device)
    return model.to(memory_format=torch.channels_last) if cfg.train.channels_last else model


def load_trained_model(cfg: Config, saved: dict, device, path: str | Path = "the model file") -> nn.Module:
    """The model ``cfg`` describes, with the weights of ``saved`` (the loaded model file or checkpoint ``path``),
    in eval mode. Weights that do not fit the model are a ConfigError naming the ``model.*`` keys that differ."""
    state = saved.get("model", saved)
    num_classes = saved.get("num_classes")
    if num_classes is None:
        split = pick_split(splits_of(cfg.data.dataset, cfg.data.root), cfg.data.train_split, cfg.data.dataset.name)
        num_classes = contiguous_labels(split)[1]
    model = model_for(cfg, num_classes, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:  # shapes or names differ: another model's weights
        raise ConfigError(model_mismatch(cfg, saved.get("config"), path, error)) from None
    return model.eval()


def evaluate_checkpoint(cfg: Config, path: str | Path, progress: bool = True) -> dict[str, float]:
    """Metrics of a saved model (a run's model.pt, best_model.pt or a training checkpoint) under ``cfg``."""
    device = resolve_device(cfg.train.device)
    model = load_trained_model(cfg, read_checkpoint(path, map_location=device), device, path)
    return evaluate(model, cfg, device, progress=progress)


class Trainer:
    def __init__(self, cfg: Config, run_dir: str | Path, progress: bool = True, topology: Topology | None = None,
                 device: torch.device | None = None):
        self.cfg, self.run = cfg, RunDir(run_dir)
        self.topology = topology or Topology()
        self.progress = progress and self.topology.is_main
        self.device = device or resolve_device(cfg.train.device)
        seed_everything(cfg.seed)
        splits = splits_of(cfg.data.dataset, cfg.data.root)
        self.train_split, self.num_classes = contiguous_labels(
            pick_split(splits, cfg.data.train_split, cfg.data.dataset.name))
        if cfg.data.check_files and self.train_split.paths is not None:
            report_missing_files(self.train_split)
        self.model = model_for(cfg, self.num_classes, self.device)
        probe_size = cfg.data.train_transform.crop or cfg.data.train_transform.random_resized_crop or 64
        freeze_unread_parameters(self.model, {term.input for term in cfg.losses.values()}, probe_size, self.device)
        self.net = wrap_model(self.model, self.topology, self.device)
        self.criterion = Criterion(cfg.losses, self.num_classes,
                                   embedding_dim(self.model, probe_size, self.device)).to(self.device)
        named = [*self.model.named_parameters(), *(("criterion." + n, p)
                                                    for n, p in self.criterion.named_parameters())]
        self.loss_fn = GlobalBatchCriterion(self.criterion) if self.topology.distributed else self.criterion
        self.optimizer = build_optimizer(named, cfg.train.optimizer)
        self.guarded = GuardedParameters(named, self.optimizer)
        self.schedule = build_schedule(self.optimizer, cfg.train.schedule, cfg.train.epochs)
        self.scaler = torch.amp.GradScaler(enabled=self.amp_dtype == torch.float16)
        self.sampler = self._sampler()
        self.store = CheckpointStore(self.run.path)
        self.epoch_log = EpochLog(self.run.path, cfg.train.epochs, cfg.train.tensorboard) if self.topology.is_main \
            else None
        self.state = {"epoch": 0, "batch": 0, "global_step": 0, "history": [], "skipped_images": 0,
                      "skipped_files": [], "skipped_batches": 0, "epoch_sums": {}, "best": None}

    @property
    def amp_dtype(self):
        if self.device.type != "cuda" or self.cfg.train.amp == "off":
            return None
        return torch.bfloat16 if self.cfg.train.amp == "bf16" else torch.float16

    def _sampler(self):
        d, shard = self.cfg.data, {"rank": self.topology.rank, "world_size": self.topology.world_size}
        try:
            if d.sampler == "random":
                return RandomBatchSampler(len(self.train_split), d.batch_size, seed=self.cfg.seed, **shard)
            return ClassBalancedBatchSampler(self.train_split.labels, d.samples_per_class, d.batch_size,
                                             seed=self.cfg.seed, small_classes=d.small_classes,
                                             batches_per_epoch=d.batches_per_epoch, **shard)
        except ValueError as error:
            raise TrainingError(f"cannot sample training batches from split {self.train_split.name!r}: {error}; "
                                "adjust data.batch_size, data.samples_per_class or data.small_classes") from None

    def _loader(self) -> DataLoader:
        d = self.cfg.data
        images = ImageDataset(self.train_split, build_transform(d.train_transform), crop_boxes=d.crop_boxes,
                              bad_images=d.bad_images)
        if self.cfg.train.multistage:  # images read chunk by chunk inside the step: memory bounded by the chunk
            return chunked_batches(images, self.sampler, d.num_workers, self.device.type == "cuda")
        return DataLoader(images, batch_sampler=self.sampler, collate_fn=collate_skipping,
                          num_workers=d.num_workers, pin_memory=self.device.type == "cuda")

    # ----------------------------------------------------------------- checkpoints
    def _checkpoint(self) -> None:
        """Written by the main process only; the others wait so that no process runs ahead of it."""
        if self.topology.is_main:
            self._write_checkpoint()
        barrier(self.topology)

    def _write_checkpoint(self) -> None:
        self.store.save({
            "model": self.model.state_dict(), "criterion": self.criterion.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": torch.get_rng_state(),
            "state": self.state, "config": config_to_dict(self.cfg), "num_classes": self.num_classes,
        }, self.state["global_step"])

    def _restore(self) -> bool:
        found = self.store.load_latest(map_location=self.device, config=config_to_dict(self.cfg))
        if found is None:
            return False
        saved, path = found
        self.model.load_state_dict(saved["model"])
        self.criterion.load_state_dict(saved["criterion"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["rng"].cpu())
        self.state = saved["state"]
        log.warning("resuming from %s (%s)", path, resume_position(self.state, self.cfg.train.epochs))
        return True

    # ----------------------------------------------------------------- steps
    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.train.freeze_bn:
            freeze_batchnorm(self.model)

    def _step(self, images, labels) -> tuple[float, dict] | None:
        """One optimizer step; None when the batch was skipped (non-finite loss, gradient or update; no
        readable image)."""
        t = self.cfg.train
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        self.optimizer.zero_grad(set_to_none=True)
        if t.multistage:
            from retrieval.engine.multistage import StagesDisagree, multistage_step

            try:
                result = multistage_step(self.net, images, labels, self.loss_fn, t.multistage_chunk,
                                         autocast=self.amp_dtype, scaler=self.scaler if self.scaler.is_enabled()
                                         else None)
            except StagesDisagree as error:
                raise TrainingError(f"{error} (at epoch {self.state['epoch'] + 1}, batch {self.state['batch'] + 1}; "
                                    f"the last good checkpoint in {self.store.dir} is kept)") from None
            if result is None:
                return None
            loss, terms = result
        else:
            with autocast:
                outputs = self.net(images)
            loss, terms = self.loss_fn(outputs, labels)
        value = float(loss.detach())
        if not math.isfinite(value):
            return self._skip_nonfinite(f"loss {value}")
        if not t.multistage:
            self.scaler.scale(loss).backward()
        if t.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_([p for group in self.optimizer.param_groups for p in group["params"]],
                                     t.grad_clip)  # the criterion's parameters (proxies) too
        if not self.scaler.is_enabled():  # with float16 the scaler skips non-finite gradients itself
            name = self.guarded.nonfinite_gradient()
            if name is not None:
                return self._skip_nonfinite(f"gradient of {name}")
        before = self.guarded.snapshot() if t.nonfinite == "skip" else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        name = self.guarded.nonfinite_weight()
        if name is not None:
            if before is not None:
                self.guarded.restore(before)
            return self._skip_nonfinite(f"weight {name} after the update (step undone)")
        return value, terms

    def _skip_nonfinite(self, what: str) -> None:
        """Apply train.nonfinite to a NaN/infinity in ``what``: raise, or log and skip the batch."""
        where = f"epoch {self.state['epoch'] + 1}, batch {self.state['batch'] + 1}"
        if self.cfg.train.nonfinite == "error":
            raise TrainingError(f"non-finite {what} at {where}; the last good checkpoint in {self.store.dir} is "
                                "kept. Set train.nonfinite=skip to skip such batches")
        log.warning("skipping batch with non-finite %s at %s", what, where)
        self.optimizer.zero_grad(set_to_none=True)
        return None

    def _train_epoch(self, stop: dict) -> dict:
        epoch, state = self.state["epoch"] + 1, self.state
        self.sampler.set_epoch(epoch, start_batch=state["batch"])
        self._train_mode()
        started = time.time()
        bar = tqdm(self._loader(), total=len(self.sampler) - state["batch"], desc=f"epoch {epoch}",
                   leave=False, disable=not self.progress)
        for batch in bar:
            if batch.images is not None:
                result = self._step(batch.images.to(self.device, non_blocking=True), batch.labels.to(self.device))
                if result is None:
                    state["skipped_batches"] += 1
                else:
                    sums = state["epoch_sums"]
                    for key, value in {"loss": result[0], **{f"loss/{k}": v for k, v in result[1].items()}}.items():
                        sums[key] = sums.get(key, 0.0) + value
                    sums["steps"] = sums.get("steps", 0) + 1
                    bar.set_postfix(loss=f"{result[0]:.4f}")
            self._count_skipped(batch.skipped)  # after the step: multistage reads the images inside it
            state["batch"] += 1
            state["global_step"] += 1
            if stop["signal"] is not None:
                self._checkpoint()
                self._stop_if_signalled(stop)
        sums, steps = state["epoch_sums"], max(1, state["epoch_sums"].get("steps", 0))
        row = {"epoch": epoch, **{k: v / steps for k, v in sums.items() if k != "steps"},
               "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        state["epoch_sums"], state["batch"], state["epoch"] = {}, 0, epoch
        return row

    def _count_skipped(self, skipped: list[int]) -> None:
        state = self.state
        state["skipped_images"] += len(skipped)
        for index in skipped:
            name = self.train_split.paths[index] if self.train_split.paths is not None else f"item {index}"
            if name not in state["skipped_files"] and len(state["skipped_files"]) < MAX_NAMED_SKIPS:
                state["skipped_files"].append(name)

    def _stop_if_signalled(self, stop: dict) -> None:
        """After a checkpoint: raise Interrupted if SIGINT/SIGTERM arrived since the run started."""
        if stop["signal"] is not None:
            raise Interrupted(f"stopped by signal {stop['signal']} at epoch {self.state['epoch'] + 1}, batch "
                              f"{self.state['batch']}; checkpoint written to {self.store.dir}; run the same "
                              "command to resume")

    # ----------------------------------------------------------------- evaluation and selection
    def _evaluate(self) -> dict:
        self.model.eval()
        return evaluate(self.model, self.cfg, self.device, progress=self.progress, topology=self.topology)

    def _record(self, row: dict) -> None:
        t, state = self.cfg.train, self.state
        epoch = row["epoch"]
        if epoch == 0 or epoch % max(1, self.cfg.eval.every) == 0 or epoch == t.epochs:
            row.update(self._evaluate())
            score = row.get(t.select_metric)
            if t.select == "best":
                if score is None:
                    raise TrainingError(f"train.select_metric {t.select_metric!r} is not among the metrics "
                                        f"{sorted(k for k in row if k not in ('epoch',))}")
                if state["best"] is None or score > state["best"]["score"]:
                    state["best"] = {"epoch": epoch, "score": score}
                    self._save_model(BEST_MODEL)
        state["history"].append(row)
        if self.topology.is_main:
            self.run.write_log(state["history"])
            self.epoch_log.write(row)

    def fit(self) -> dict:
        """Train (or resume) to the last epoch; return what goes into metrics.json."""
        t = self.cfg.train
        with stop_on_signals() as stop:
            if not self._restore():
                self._record({"epoch": 0})
                self._checkpoint()
                self._stop_if_signalled(stop)
            while self.state["epoch"] < t.epochs:
                row = self._train_epoch(stop)
                self.schedule.step()
                self._record(row)
                self._checkpoint()
                self._stop_if_signalled(stop)
        result = self._selected_metrics()
        if self.cfg.model.whitening is not None:
            self._load_selected_model()  # whitening and both metrics belong to the selected epoch's model
            result["whitening_skipped_images"] = self._fit_whitening()
            result["metrics_before_whitening"] = result["metrics"]
            result["metrics"] = self._evaluate()
            result["whitening"] = (f"metrics: epoch {result['selected_epoch']} after the whitening learned on its "
                                   "descriptors; metrics_before_whitening: the same epoch without it")
        self._save_model(FINAL_MODEL)
        return result

    def _load_selected_model(self) -> None:
        """With ``train.select: best``, the best epoch's weights (saved when it was evaluated)."""
        if self.cfg.train.select == "best":
            self.model.load_state_dict(read_checkpoint(self.run.path / BEST_MODEL, map_location=self.device)["model"])

    def _save_model(self, name: str) -> None:
        if self.topology.is_main:
            save_verified({"model": self.model.state_dict(), "config": config_to_dict(self.cfg),
                           "num_classes": self.num_classes}, self.run.path / name)

    def _fit_whitening(self) -> int:
        """Learn the configured whitening on the training descriptors and attach it to the model.

        With ``data.bad_images=skip`` the unreadable training images are left out; returns how many.
        """
        from retrieval.models import WHITENINGS

        spec = self.cfg.model.whitening
        self.model.eval()
        split, skipped = self._readable_training_split()
        features = sharded_features(self.model, split, self.cfg, self.device, self.progress, self.topology)
        labels = torch.as_tensor(split.labels)
        self.model.whitening = WHITENINGS.get(spec.name)(features=features, labels=labels, **spec.args)
        self.model.whitening.to(self.device)
        return skipped

    def _readable_training_split(self) -> tuple[Split, int]:
        """The training split without its unreadable images when data.bad_images=skip, and their number."""
        split = self.train_split
        if self.cfg.data.bad_images != "skip" or split.paths is None:
            return split, 0
        probe = ImageDataset(split, transform=lambda image: True, bad_images="skip")  # decodes, keeps nothing
        unreadable = [i for i in range(len(split)) if probe[i][0] is None]
        if unreadable:
            log.warning("learning the whitening without %d unreadable training images, e.g. %s", len(unreadable),
                        ", ".join(probe.path(i) for i in unreadable[:5]))
        return split.subset(np.setdiff1d(np.arange(len(split)), unreadable)), len(unreadable)

    def _selected_metrics(self) -> dict:
        """Metrics of the last evaluated epoch, or of the best one when the config asks for that."""
        history, t = self.state["history"], self.cfg.train
        if t.select == "best":
            chosen = next(r for r in history if r["epoch"] == self.state["best"]["epoch"])
            selection = f"best epoch on the evaluation set by {t.select_metric} (asked for by train.select)"
        else:
            chosen = [row for row in history if evaluation_columns(row)][-1]
            selection = "last epoch"
        return {
            "metrics": {k: chosen[k] for k in evaluation_columns(chosen)},
            "epoch0": {k: v for k, v in history[0].items() if k != "epoch"},
            "selected_epoch": chosen["epoch"], "selection": selection,
            "skipped_images": self.state["skipped_images"], "skipped_files": self.state["skipped_files"],
            "skipped_batches": self.state["skipped_batches"],
        }


def train(cfg: Config, run_dir: str | Path, progress: bool = True) -> dict:
    """Train ``cfg`` in ``run_dir`` (resuming if it holds this run) and write metrics.json.

    A finished run is not retrained: its metrics are returned as they are.
    """
    topology, device = init_from_environment(cfg.train.device)
    run = RunDir(run_dir)
    with run.owned() if topology.is_main else nullcontext():  # checked and locked before anything is written
        return _train_in(cfg, run, topology, device, progress)


def _train_in(cfg: Config, run: RunDir, topology: Topology, device: torch.device, progress: bool) -> dict:
    if topology.is_main:
        resumed = run.claim(cfg)
    barrier(topology)
    finished = run.finished_metrics()
    if finished is not None:
        log.warning("%s already holds a finished run; not retraining", run.path)
        return finished
    if topology.is_main and resumed:
        log.warning("%s holds an unfinished run of this config; resuming it", run.path)
    result = Trainer(cfg, run.path, progress=progress, topology=topology, device=device).fit()
    if topology.is_main:
        run.write_metrics(result)
    barrier(topology)
    return result
