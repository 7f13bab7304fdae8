"""The command line: bad values, help of every subcommand, data roots (issue 11 item 6, issue 16 item 6).

Called in process through ``retrieval.cli.main``; each case shows the one-line message and the exit status.
"""
import re
from pathlib import Path

import pytest
import torch

from retrieval import cli
from retrieval.config import dump_config, load_config
from retrieval.data.datasets.parsing import DatasetNotFoundError, require_root
from retrieval.tables.spec import is_table_file

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "experiments" / "demo" / "quickstart.yaml"
TINY = ["data.batch_size=16", "data.batches_per_epoch=2", "model.backbone.args.width=8", "model.head.args.dim=16",
        "data.train_transform={resize: 12, crop: 10}", "data.test_transform={resize: 12, crop: 10}",
        "eval.batch_size=512"]


def run(argv, capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``python -m retrieval ARGV`` (argparse's exits included)."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


BAD_VALUES = [
    ("train.grad_clip=-1", "'train.grad_clip' (set in the command line): must be > 0, got -1.0"),
    ("train.optimizer.lr=-1", "'train.optimizer.lr' (set in the command line): must be > 0, got -1.0"),
    ("eval.scales=[]", "'eval.scales' (set in the command line): must not be empty, got []"),
    ("data.num_workers=-1", "'data.num_workers' (set in the command line): must be >= 0, got -1"),
    ("train.schedule.step_size=0", "'train.schedule.step_size' (set in the command line): must be >= 1, got 0"),
    ("model.head.args.dim=-5", "'model.head.args.dim' (set in the command line): must be >= 1, got -5"),
    ("model.head.args.pooling=gme", "'model.head.args.pooling' (set in the command line): unknown pooling 'gme'; "
                                    "known: gem, mac, spoc. Did you mean 'gem'?"),
    ("train.device=cdua", "'train.device' (set in the command line): 'cdua' is not a device name"),
    ("train..epochs=3", "override 'train..epochs=3' (on the command line): the key 'train..epochs' has an empty"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[override for override, _ in BAD_VALUES])
def test_a_bad_value_is_a_config_error_with_status_2_before_anything_is_written(override, message, tmp_path,
                                                                                 capsys):
    output = tmp_path / "run"
    code, out, err = run(["train", QUICKSTART, override, "--output", output, "--quiet"], capsys)
    assert code == 2 and err.startswith("config error: ") and message in err
    assert "Traceback" not in err and not output.exists()


def test_cuda_without_cuda_is_a_config_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(["train", QUICKSTART, "train.device=cuda", "--output", tmp_path / "run"], capsys)
    assert code == 2 and "'train.device' (set in the command line): 'cuda': CUDA is not available" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_evaluate_with_another_head_size_names_the_key_and_both_sizes(tmp_path, capsys):
    """The weights of a 16-d head under a config asking for 8-d: a config error, not a load_state_dict trace."""
    config = tmp_path / "c.yaml"
    config.write_text(dump_config(load_config(QUICKSTART, [*TINY, "train.epochs=0"])))
    assert run(["train", config, "--output", tmp_path / "run", "--quiet"], capsys)[0] == 0
    model = tmp_path / "run" / "model.pt"
    code, _, err = run(["evaluate", config, "model.head.args.dim=8", "--checkpoint", model, "--quiet"], capsys)
    assert code == 2, err
    assert f"config error: {model} was trained with another model: 'model.head.args.dim' (set in the command " \
           "line) is 8, the file's model has 16" in err
    assert "size mismatch" not in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["data"], ["bench"]])
def test_data_and_bench_help_list_their_actions(command, capsys):
    code, out, err = run([*command, "--help"], capsys)
    assert code == 0 and "the following arguments are required" not in err
    assert f"retrieval {command[0]}" in out and ("verify" in out if command == ["data"] else "knn" in out)


@pytest.mark.parametrize("command", [["data", "verify"], ["bench", "knn"], ["table"]])
def test_the_help_of_a_delegated_command_is_its_own(command, capsys):
    code, out, _ = run([*command, "--help"], capsys)
    assert code == 0 and "usage: " in out and " ".join(command) in out


def test_the_table_help_example_is_a_table_file(capsys):
    _, out, _ = run(["table", "--help"], capsys)
    examples = re.findall(r"experiments/\S+?\.yaml", " ".join(out.split()))
    assert examples and all(is_table_file(ROOT / example) for example in examples)


def test_verify_refuses_a_root_that_does_not_exist(tmp_path, capsys):
    code, out, _ = run(["data", "verify", "cub200", "--root", tmp_path / "nonexistent"], capsys)
    assert code == 1 and "OK" not in out
    assert f"--root {tmp_path / 'nonexistent'} is not a folder" in out and "python data_prep/cub200.py" in out


@pytest.mark.parametrize("root", ["nonexistent", "empty"])
def test_verify_of_a_bundled_dataset_refuses_a_root_it_would_ignore(tmp_path, capsys, root):
    (tmp_path / "empty").mkdir()
    code, out, _ = run(["data", "verify", "digits", "--root", tmp_path / root], capsys)
    assert code == 1 and "OK" not in out
    assert "digits is bundled and reads no files" in out and "data_prep" not in out
    code, out, _ = run(["data", "verify", "digits"], capsys)
    assert code == 0 and out.startswith("digits (bundled): OK")


def test_the_missing_root_hint_names_the_flags_that_exist():
    with pytest.raises(DatasetNotFoundError) as error:
        require_root(None, "cub200")
    message = str(error.value)
    assert "root=DIR" not in message and "--root (data verify)" in message and "data.root" in message


def test_a_table_data_root_that_does_not_exist_is_a_usage_error(tmp_path, capsys):
    code, _, err = run(["table", ROOT / "experiments/smooth_ap/table_sop.yaml", "--data-root", tmp_path / "none",
                        "--results", tmp_path / "results", "--runs", tmp_path / "runs"], capsys)
    assert code == 2 and f"--data-root {tmp_path / 'none'} is not a folder" in err
    assert not (tmp_path / "results").exists()


def test_a_table_without_any_data_root_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RETRIEVAL_DATA_ROOT", raising=False)
    code, out, _ = run(["table", ROOT / "experiments/smooth_ap/table_sop.yaml", "--results", tmp_path / "results",
                        "--runs", tmp_path / "runs"], capsys)
    assert code == 0 and "skipped" in out
    assert "neither --data-root nor $RETRIEVAL_DATA_ROOT is set" in out
