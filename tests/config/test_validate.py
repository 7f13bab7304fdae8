"""Typed validation of configs: unknown keys, wrong types, component arguments."""
from pathlib import Path

import pytest

from retrieval.config import ConfigError, config_from_dict, config_to_dict, load_config
from retrieval.config.schema import TrainConfig
from retrieval.config.validate import Where, build_dataclass, check_arguments

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "demo" / "quickstart.yaml"


def test_quickstart_loads_and_round_trips():
    cfg = load_config(QUICKSTART)
    assert cfg.data.dataset.name == "digits" and cfg.losses["ranking"].name == "smooth_ap"
    assert config_to_dict(config_from_dict(config_to_dict(cfg))) == config_to_dict(cfg)


def test_unknown_key_names_key_file_and_closest(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(f"_base_: {QUICKSTART}\ntrain:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert "'train.epoch'" in message and "run.yaml:3" in message and "Did you mean 'epochs'" in message


def test_wrong_type_names_key_and_what_it_accepts():
    with pytest.raises(ConfigError, match=r"'train.epochs' \(set in the command line\): expected an integer"):
        load_config(QUICKSTART, ["train.epochs=three"])
    with pytest.raises(ConfigError, match=r"'train.amp'.*one of 'off', 'bf16', 'fp16'.*Did you mean 'bf16'"):
        load_config(QUICKSTART, ["train.amp=bf61"])


def test_ints_are_accepted_for_floats_but_bools_are_not_ints():
    where = Where({})
    assert build_dataclass(TrainConfig, {"grad_clip": 1}, "train", where).grad_clip == 1.0
    with pytest.raises(ConfigError, match="expected an integer"):
        build_dataclass(TrainConfig, {"epochs": True}, "train", where)


def test_component_arguments_are_checked_against_the_signature():
    with pytest.raises(ConfigError, match=r"unknown argument 'losses.ranking.args.temprature'.*Did you mean "
                                          r"'temperature'"):
        load_config(QUICKSTART, ["losses.ranking.args.temprature=0.1"])
    with pytest.raises(ConfigError, match="losses.ranking.args.temperature.*expected a number"):
        load_config(QUICKSTART, ["losses.ranking.args.temperature=cold"])
    with pytest.raises(ConfigError, match="unknown loss 'smoth_ap'.*Did you mean 'smooth_ap'"):
        load_config(QUICKSTART, ["losses.ranking.name=smoth_ap"])


def test_check_arguments_refuses_injected_parameters():
    def factory(in_channels: int, num_classes: int, dim: int = 8):
        return None

    where = Where({})
    assert check_arguments(factory, {"dim": 4}, "head.args", where, ("in_channels", "num_classes")) == {"dim": 4}
    with pytest.raises(ConfigError, match="unknown argument 'head.args.num_classes'"):
        check_arguments(factory, {"num_classes": 4}, "head.args", where, ("in_channels", "num_classes"))


def test_batch_size_must_hold_whole_classes():
    with pytest.raises(ConfigError, match="multiple of samples_per_class"):
        load_config(QUICKSTART, ["data.batch_size=30"])


def test_removing_every_loss_is_an_error_when_training():
    with pytest.raises(ConfigError, match="at least one loss term"):
        load_config(QUICKSTART, ["losses.ranking=null"])
