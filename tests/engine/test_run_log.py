"""Run logs a person can read: a summary line per epoch without progress bars; TensorBoard when installed."""
import pytest

from retrieval.config import ConfigError
from retrieval.engine.run_log import TENSORBOARD_DIR, summary_line, tensorboard_available
from retrieval.engine.trainer import train


def test_summary_line():
    row = {"epoch": 3, "loss": 0.23114, "loss/ranking": 0.2, "lr": 0.001, "seconds": 12.34, "recall@1": 0.953125}
    assert summary_line(row, 6) == "epoch 3/6  loss 0.2311  lr 0.001  12.3 s  recall@1 0.9531"
    assert summary_line({"epoch": 0, "map": 0.5}, 6) == "epoch 0/6  (untrained)  map 0.5000"


def test_one_line_per_epoch_with_progress_bars_off(tiny_config, tmp_path, capsys):
    train(tiny_config(train__epochs=2, eval__every=2), tmp_path / "run", progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in lines] == ["0/2", "1/2", "2/2"]
    assert "recall@1" in lines[0] and "loss" not in lines[0]
    assert "loss" in lines[1] and " lr " in lines[1] and "recall@1" not in lines[1]  # epoch 1 is not evaluated
    assert "loss" in lines[2] and "recall@1" in lines[2]


def test_tensorboard_event_files_or_a_clear_error(tiny_config, tmp_path):
    if not tensorboard_available():
        with pytest.raises(ConfigError, match="train.tensorboard=true needs the tensorboard package, which is not "
                                              "installed; pip install tensorboard"):
            tiny_config(train__tensorboard=True)
        assert not (tmp_path / "run").exists()
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(train__epochs=2, train__tensorboard=True), tmp_path / "run", progress=False)
    events = EventAccumulator(str(tmp_path / "run" / TENSORBOARD_DIR))
    events.Reload()
    assert [event.step for event in events.Scalars("loss")] == [1, 2]
    assert [event.step for event in events.Scalars("recall@1")] == [0, 1, 2]
