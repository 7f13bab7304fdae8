"""The typed shape of a run's config. Every key a YAML file may set is a field here."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from retrieval.config.constraints import DeviceName, NonEmpty, Range
from retrieval.config.loader import ConfigError
from retrieval.data.transforms import TransformConfig

POSITIVE, NON_NEGATIVE = Range(ge=1), Range(ge=0)


@dataclass
class Component:
    """A registered component by ``name``, built with keyword ``args`` (checked against its signature)."""

    name: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    """``root`` null means ``$RETRIEVAL_DATA_ROOT/<dataset name>`` (bundled datasets need none)."""

    dataset: Component = field(default_factory=lambda: Component("digits"))
    root: str | None = None
    train_split: str = "train"
    sampler: Literal["class_balanced", "random"] = "class_balanced"
    batch_size: Annotated[int, POSITIVE] = 64
    samples_per_class: Annotated[int, POSITIVE] = 4
    small_classes: Literal["repeat", "drop"] = "repeat"
    batches_per_epoch: Annotated[int | None, POSITIVE] = None
    num_workers: Annotated[int, NON_NEGATIVE] = 0
    crop_boxes: bool = False
    bad_images: Literal["error", "skip"] = "error"
    check_files: bool = True
    train_transform: TransformConfig = field(default_factory=TransformConfig)
    test_transform: TransformConfig = field(default_factory=TransformConfig)

    def validate(self, key, where):
        if self.sampler == "class_balanced" and self.batch_size % self.samples_per_class:
            raise ConfigError(f"{where(key + '.batch_size')}: batch_size {self.batch_size} must be a multiple "
                              f"of samples_per_class {self.samples_per_class} for the class-balanced sampler")


@dataclass
class ModelConfig:
    """``whitening`` (optional) is learned after training on the training descriptors."""

    backbone: Component = field(default_factory=lambda: Component("small_cnn"))
    head: Component = field(default_factory=lambda: Component("embedding", {"pooling": "gem", "dim": 64}))
    whitening: Component | None = None


@dataclass
class LossTerm:
    """One term of the total loss: ``weight * LOSSES[name](**args)(outputs[input], labels)``.

    ``input`` names a key of the model's output ("embedding", "logits", "branches"); when the
    output is a list (one embedding per branch), the term is summed over the list.
    """

    name: str
    weight: float = 1.0
    input: str = "embedding"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimizerConfig:
    """``lr_multipliers`` maps a parameter-name prefix (``head.``, ``backbone.layer4``) to a factor."""

    name: Literal["sgd", "adam", "adamw"] = "adam"
    lr: Annotated[float, Range(gt=0)] = 1e-3
    weight_decay: Annotated[float, NON_NEGATIVE] = 0.0
    momentum: Annotated[float, Range(ge=0, le=1)] = 0.9
    lr_multipliers: dict[str, Annotated[float, NON_NEGATIVE]] = field(default_factory=dict)


@dataclass
class ScheduleConfig:
    """Epoch-wise learning-rate schedule."""

    name: Literal["constant", "step", "multistep", "cosine"] = "constant"
    step_size: Annotated[int, POSITIVE] = 10
    milestones: list[Annotated[int, POSITIVE]] = field(default_factory=list)
    gamma: Annotated[float, Range(gt=0)] = 0.1


@dataclass
class TrainConfig:
    """``select``: "last" epoch (default) or "best" on the evaluation metric ``select_metric``
    (what some authors' code did; reported as such in metrics.json). ``tensorboard``: also write
    TensorBoard event files to the run's ``tensorboard/`` folder (needs the tensorboard package)."""

    epochs: Annotated[int, NON_NEGATIVE] = 10
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    freeze_bn: bool = False
    amp: Literal["off", "bf16", "fp16"] = "off"
    channels_last: bool = False
    multistage: bool = False
    multistage_chunk: Annotated[int, POSITIVE] = 32
    nonfinite: Literal["error", "skip"] = "error"
    grad_clip: Annotated[float | None, Range(gt=0)] = None  # max gradient norm; null: no clipping
    device: Annotated[str, DeviceName()] = "auto"
    select: Literal["last", "best"] = "last"
    select_metric: str = "map"
    tensorboard: bool = False

    def validate(self, key, where):
        from retrieval.engine.run_log import tensorboard_available

        if self.tensorboard and not tensorboard_available():
            raise ConfigError(f"{where(key + '.tensorboard')}: train.tensorboard=true needs the tensorboard package, "
                              "which is not installed; pip install tensorboard, or set train.tensorboard=false")


@dataclass
class EvalTarget:
    """A dataset to evaluate on: ``dataset`` null means the training dataset."""

    dataset: Component | None = None
    root: str | None = None
    splits: Annotated[list[str], NonEmpty()] = field(default_factory=lambda: ["test"])
    protocol: Component = field(default_factory=lambda: Component("leave_one_out", {"ks": [1, 2, 4, 8]}))


@dataclass
class EvalConfig:
    """Evaluation runs at epoch 0 (untrained), every ``every`` epochs, and after the last epoch."""

    targets: dict[str, EvalTarget] = field(default_factory=lambda: {"test": EvalTarget()})
    every: Annotated[int, POSITIVE] = 1
    batch_size: Annotated[int, POSITIVE] = 128
    scales: Annotated[list[Annotated[float, Range(gt=0)]], NonEmpty()] = field(default_factory=lambda: [1.0])
    # generalized mean over scales (retrieval.evaluation.postprocess.aggregate_scales)
    scale_power: Annotated[float, Range(gt=0)] = 1.0
    scale_antialias: bool = True  # antialiased downscaling; cnnimageretrieval-pytorch's multi-scale has none


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: dict[str, LossTerm | None] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self, key, where):
        from retrieval.config.components import check_components

        self.losses = {name: term for name, term in self.losses.items() if term is not None}
        if not self.losses and self.train.epochs > 0:
            raise ConfigError(f"{where('losses')}: training needs at least one loss term")
        check_components(self, where)
