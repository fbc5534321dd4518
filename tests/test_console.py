"""What the command line shows on stderr: progress bars, and no TensorFlow start-up lines."""

import io
import logging
import subprocess
import sys

import numpy as np
import pytest
from conftest import write_isbi

TF_STARTUP = ("absl::InitializeLog", "cuInit", "oneDNN", "cudart_stub", "cpu_feature_guard")


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.mark.slow
def test_fit_prints_no_tensorflow_startup_lines_unless_verbose(tmp_path):
    data = write_isbi(tmp_path / "data", patients=2, timepoints=1, shape=(16, 16, 8))
    mssoft = [sys.executable, "-c", "from mssoft.cli.main import cli; cli()"]
    args = ["fit", str(data), "--epochs", "1", "--base-filters", "2", "--depth", "1"]
    quiet = subprocess.run(
        [*mssoft, *args, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "epoch 1/1" in quiet.stderr  # mssoft's own log lines still show
    assert not [line for line in quiet.stderr.splitlines() if any(s in line for s in TF_STARTUP)]
    assert "\r" not in quiet.stderr  # stderr is not a terminal: no progress bar
    # -v shows them again
    verbose = subprocess.run(
        [*mssoft, "-v", "predict", str(tmp_path / "run"), str(data), "--out", str(tmp_path / "p")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert any(s in verbose.stderr for s in TF_STARTUP), verbose.stderr[-3000:]


def test_batch_progress_bar_draws_each_epoch_and_keeps_log_lines_whole(monkeypatch):
    import keras

    from mssoft.nn.progress_bar import BatchProgressBar

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    handler = logging.StreamHandler(terminal)
    logger = logging.getLogger("test_console.bar")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)

    class LogEachEpoch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                logger.info("a line in the middle of an epoch")

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((12, 4), np.float32)
    try:
        model.fit(
            x,
            x[:, :1],
            batch_size=4,
            epochs=2,
            verbose=0,
            callbacks=[LogEachEpoch(), BatchProgressBar(terminal, loggers=[logger])],
        )
    finally:
        logger.removeHandler(handler)
    text = terminal.getvalue()
    assert "epoch 1/2:" in text and "epoch 2/2:" in text and "/3 [" in text and "batch/s" in text
    # the log line is whole, on a line of its own (the bar is cleared first, then redrawn)
    lines = [line.split("\r")[-1] for line in text.split("\n")]
    assert lines.count("a line in the middle of an epoch") == 2
    # the redirect is undone after training: the logger has its own handler back
    assert logger.handlers == []  # (removed above; a leftover tqdm handler would show here)


def test_progress_routes_log_lines_above_the_bar_on_a_terminal(monkeypatch):
    from mssoft.cli import _common

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    root = logging.getLogger()
    handler = logging.StreamHandler(terminal)
    monkeypatch.setattr(root, "handlers", [handler])
    seen = []
    for item in _common.progress([1, 2], "build-masks"):
        seen.append(type(root.handlers[0]).__name__)
        logging.getLogger("mssoft.test").warning("scan %d done", item)
    assert seen == ["_TqdmLoggingHandler", "_TqdmLoggingHandler"]
    assert root.handlers == [handler]
    lines = [line.split("\r")[-1] for line in terminal.getvalue().split("\n")]
    assert "scan 1 done" in lines and "scan 2 done" in lines
    assert "build-masks" in terminal.getvalue()
