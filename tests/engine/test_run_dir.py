"""Run directories: bad output locations, a read-only or full disk, and two processes on one --output
(issue 16 items 6 to 8). Each case ends in one line naming the path and exit status 1, before anything trains."""
import contextlib
import errno
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from retrieval import cli
from retrieval import io as io_module
from retrieval.config import dump_config
from retrieval.engine.checkpoint import CheckpointStore
from retrieval.engine.run_dir import RunDir, RunDirError
from retrieval.engine.trainer import resume_position

REPO = Path(__file__).resolve().parents[2]


def run(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture
def command(tiny_config, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(dump_config(tiny_config()))
    return lambda output: ["train", config, "--output", output, "--quiet"]


def assert_one_clear_line(err: str, *parts: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and all(part in lines[0] for part in parts), err
    assert "Traceback" not in err


def test_an_output_that_is_a_file_is_refused(command, tmp_path, capsys):
    output = tmp_path / "taken"
    output.write_text("not a run\n")
    code, err = run(command(output), capsys)
    assert code == 1
    assert_one_clear_line(err, f"the run directory {output} is a file, not a folder; choose another --output")
    assert output.read_text() == "not a run\n"


def test_an_output_under_a_file_is_refused_naming_that_file(command, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(command(blocker / "sub" / "run"), capsys)
    assert code == 1
    assert_one_clear_line(err, f"cannot make the run directory {blocker / 'sub' / 'run'}: {blocker} is a file")


def test_a_config_yaml_that_is_a_folder_is_refused(command, tmp_path, capsys):
    (tmp_path / "run" / "config.yaml").mkdir(parents=True)
    code, err = run(command(tmp_path / "run"), capsys)
    assert code == 1
    assert_one_clear_line(err, f"{tmp_path / 'run' / 'config.yaml'} is a folder where the run keeps its config.yaml")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.yaml"]


def test_a_read_only_location_is_refused_before_anything_is_written(command, tmp_path, capsys, monkeypatch):
    """Tests may run as root, for whom permissions do not stop a write: every file creation under the run
    directory fails with EROFS, as on a read-only mount."""
    output, original = tmp_path / "run", tempfile.mkstemp
    output.mkdir()

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).is_relative_to(output):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return original(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, err = run(command(output), capsys)
    assert code == 1
    assert_one_clear_line(err, f"cannot write in the run directory {output}: Read-only file system")
    assert list(output.iterdir()) == []


HOLDER = """
import sys
from retrieval.engine.run_dir import RunDir
with RunDir(sys.argv[1]).owned():
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.mark.slow
def test_a_second_process_on_the_same_output_is_refused_and_a_kill_frees_it(command, tmp_path, capsys):
    output = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(output)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, err = run(command(output), capsys)
        assert code == 1
        assert_one_clear_line(err, f"the run directory {output} is in use by another process (pid {holder.pid})")
        assert not (output / "config.yaml").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with RunDir(output).owned():  # the kernel dropped the dead holder's lock: nothing stale is left
        pass


def test_the_lock_is_released_when_the_run_ends(tmp_path):
    run_dir = RunDir(tmp_path / "run")
    with run_dir.owned():
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"), RunDir(tmp_path / "run").owned():
            pass
    with RunDir(tmp_path / "run").owned():
        pass


@contextlib.contextmanager
def filling_up(path, limit: int, original, mode: str = "wb"):
    """``atomic_open`` whose handle raises ENOSPC once ``limit`` bytes (or characters) of ``path`` are written."""
    with original(path, mode) as handle:
        written = 0

        class Full:
            def write(self, data):
                nonlocal written
                written += len(data)
                if written > limit:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return handle.write(data)

            def flush(self):
                handle.flush()

        yield Full()


@pytest.mark.slow
def test_a_full_disk_while_checkpointing_says_so_and_keeps_the_previous_checkpoints(command, tmp_path, capsys,
                                                                                    monkeypatch):
    """Through torch's real writer, which turns the failed write into "unexpected pos ..."."""
    original = io_module.atomic_open

    def atomic_open(path, mode="w"):
        if Path(path).name == "step-000000003.pt":
            return filling_up(path, 2000, original)
        return original(path, mode)

    monkeypatch.setattr(io_module, "atomic_open", atomic_open)
    output = tmp_path / "run"
    code, err = run(command(output), capsys)
    assert code == 1
    store = CheckpointStore(output)
    assert_one_clear_line(err, f"cannot write checkpoint {store.dir / 'step-000000003.pt'}: No space left on device",
                          f"The previous checkpoints in {store.dir} are whole (step-000000000.pt)")
    assert "unexpected pos" not in err
    assert [p.name for p in store.paths()] == ["step-000000000.pt"] and store.verify(store.paths()[0]) is None


def test_a_full_disk_while_writing_the_log_names_the_file_in_one_line(command, tmp_path, capsys, monkeypatch):
    original = io_module.atomic_open

    def atomic_open(path, mode="w"):
        return filling_up(path, 0, original, mode) if Path(path).name == "log.csv" else original(path, mode)

    monkeypatch.setattr(io_module, "atomic_open", atomic_open)
    code, err = run(command(tmp_path / "run"), capsys)
    assert code == 1
    assert_one_clear_line(err, f"error: No space left on device: {tmp_path / 'run' / 'log.csv'}")


@pytest.mark.parametrize(("state", "expected"), [
    ({"epoch": 3, "batch": 0}, "after epoch 3 of 3"),
    ({"epoch": 0, "batch": 0}, "after the epoch-0 evaluation"),
    ({"epoch": 1, "batch": 2}, "epoch 2 of 3, after batch 2"),
])
def test_the_resume_message_never_names_an_epoch_past_the_last(state, expected):
    assert resume_position(state, 3) == expected
