"""Every config value is checked against what its key accepts, with the rest of the config, naming the key,
where it was set and what is accepted (issue 16 item 6, issue 11 item 6)."""
import math
from pathlib import Path

import pytest
import torch

from retrieval.config import ConfigError, load_config
from retrieval.config.constraints import NonEmpty, Range
from retrieval.config.validate import Where, coerce

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "demo" / "quickstart.yaml"

# (override, the key the error must name, what it must say is accepted)
BAD_VALUES = [
    ("train.grad_clip=-1", "train.grad_clip", "must be > 0"),  # would reverse the gradients
    ("train.grad_clip=0", "train.grad_clip", "must be > 0"),
    ("train.optimizer.lr=-1", "train.optimizer.lr", "must be > 0"),
    ("train.optimizer.lr=.nan", "train.optimizer.lr", "must be > 0"),
    ("train.optimizer.weight_decay=-1", "train.optimizer.weight_decay", "must be >= 0"),
    ("train.optimizer.momentum=1.5", "train.optimizer.momentum", "must be >= 0 and <= 1"),
    ("train.optimizer.lr_multipliers={head.: -1}", "train.optimizer.lr_multipliers.head.", "must be >= 0"),
    ("eval.batch_size=0", "eval.batch_size", "must be >= 1"),
    ("eval.every=0", "eval.every", "must be >= 1"),
    ("eval.scales=[]", "eval.scales", "must not be empty"),
    ("eval.scales=[1, -0.5]", "eval.scales.1", "must be > 0"),
    ("eval.targets.test.splits=[]", "eval.targets.test.splits", "must not be empty"),
    ("data.num_workers=-1", "data.num_workers", "must be >= 0"),
    ("data.batch_size=0", "data.batch_size", "must be >= 1"),
    ("data.batches_per_epoch=0", "data.batches_per_epoch", "must be >= 1"),
    ("train.epochs=-1", "train.epochs", "must be >= 0"),
    ("train.schedule.step_size=0", "train.schedule.step_size", "must be >= 1"),
    ("train.schedule.milestones=[0]", "train.schedule.milestones.0", "must be >= 1"),
    ("train.schedule.gamma=0", "train.schedule.gamma", "must be > 0"),
    ("train.multistage_chunk=0", "train.multistage_chunk", "must be >= 1"),
    ("data.train_transform.crop=0", "data.train_transform.crop", "must be >= 1"),
    ("data.test_transform.resize=[0, 4]", "data.test_transform.resize.0", "must be >= 1"),
    ("data.test_transform.std=[0.2, 0, 0.2]", "data.test_transform.std.1", "must be > 0"),
    # component arguments: declared on the registered component's own signature
    ("model.head.args.dim=-5", "model.head.args.dim", "must be >= 1"),
    ("model.head.args.pooling=gme", "model.head.args.pooling", "unknown pooling 'gme'; known: gem, mac, spoc. "
                                                               "Did you mean 'gem'?"),
    ("model.head.args.pooling_args={p: -1}", "model.head.args.pooling_args.p", "must be > 0"),
    ("model.head={name: cgd, args: {descriptors: SGS}}", "model.head.args.descriptors", "one of 'S', 'M', 'G'"),
    ("model.head={name: cgd, args: {dim: 0}}", "model.head.args.dim", "must be >= 1"),
    ("model.head={name: cgd, args: {descriptors: SMG, dim: 100}}", "model.head.args.dim",
     "cgd dim=100 cannot be split evenly over 3 descriptors"),
    ("train.device=cdua", "train.device", "'cdua' is not a device name; accepted: 'auto', 'cpu'"),
    # loss arguments: the loss is built once at validation, its refusal mapped to the key
    ("losses.ranking.args.temperature=-1", "losses.ranking.args.temperature", "temperature must be > 0"),
    ("losses.ranking={name: fastap, args: {num_bins: 0}}", "losses.ranking.args.num_bins",
     "num_bins must be a positive integer"),
    ("losses.ranking={name: quantized_ap, args: {simplified: true}}", "losses.ranking.args.simplified",
     "set tie_aware=True as well"),
]


@pytest.mark.parametrize(("override", "key", "accepted"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_bad_value_names_key_source_and_what_is_accepted(override, key, accepted):
    with pytest.raises(ConfigError) as error:
        load_config(QUICKSTART, [override])
    assert f"{key!r} (set in the command line)" in str(error.value)
    assert accepted in str(error.value)


def test_the_error_names_the_file_and_line_of_a_value_set_in_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"_base_: {QUICKSTART}\ntrain:\n  epochs: 1\n  grad_clip: -1\n")
    with pytest.raises(ConfigError, match=r"'train.grad_clip' \(set in .*run.yaml:4\): must be > 0, got -1.0"):
        load_config(path)


def test_cuda_on_a_machine_without_it_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"'train.device' \(set in the command line\): 'cuda': CUDA is not "
                                          r"available on this machine; accepted here: 'auto' or 'cpu'"):
        load_config(QUICKSTART, ["train.device=cuda"])
    assert load_config(QUICKSTART, ["train.device=cpu"]).train.device == "cpu"


def test_accepted_values_pass_and_null_stays_allowed_where_the_type_allows_it():
    assert load_config(QUICKSTART, ["train.grad_clip=2"]).train.grad_clip == 2.0
    cfg = load_config(QUICKSTART, ["train.grad_clip=null", "eval.scales=[1, 0.707]",
                                   "train.optimizer.weight_decay=0", "data.num_workers=0",
                                   "model.head.args.dim=null", "model.head.args.pooling=mac"])
    assert cfg.train.grad_clip is None and cfg.eval.scales == [1.0, 0.707]
    assert cfg.model.head.args == {"pooling": "mac", "dim": None}


def test_a_wrong_type_says_the_constraint_too():
    with pytest.raises(ConfigError, match=r"'eval.batch_size'.*expected an integer >= 1, got 'many'"):
        load_config(QUICKSTART, ["eval.batch_size=many"])


def test_an_empty_part_in_an_override_key_blames_the_command_line():
    with pytest.raises(ConfigError) as error:
        load_config(QUICKSTART, ["train..epochs=3"])
    message = str(error.value)
    assert "'train..epochs=3' (on the command line)" in message and "empty part" in message
    assert "quickstart.yaml" not in message


@pytest.mark.parametrize("value", [-1, 0, 0.5, 1, 2.0, math.inf, math.nan])
def test_range_agrees_with_the_plain_comparisons(value):
    where = Where({})
    for rule, accepted in [(Range(gt=0), value > 0), (Range(ge=1), value >= 1),
                           (Range(ge=0, le=1), 0 <= value <= 1)]:
        if accepted:
            assert coerce(value, _annotated(rule), "k", where) == value
        else:
            with pytest.raises(ConfigError, match=rf"'k' \(default\): must be {rule.accepts}"):
                coerce(value, _annotated(rule), "k", where)


def test_non_empty_refuses_empty_lists_and_mappings():
    from typing import Annotated

    where = Where({})
    assert coerce([1], Annotated[list[int], NonEmpty()], "k", where) == [1]
    for empty, tp in (([], list[int]), ({}, dict[str, int])):
        with pytest.raises(ConfigError, match="must not be empty"):
            coerce(empty, Annotated[tp, NonEmpty()], "k", where)


def _annotated(rule):
    from typing import Annotated

    return Annotated[float, rule]
