"""Several devices on one machine: ``mssoft fit --strategy mirrored`` over two logical CPUs.

TensorFlow splits a CPU into logical devices only before it initialises, so the mirrored runs
happen in new processes started with ``MSSOFT_LOGICAL_CPUS=2`` (read by mssoft.nn.distribute).
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from conftest import write_isbi

from mssoft.errors import ConfigError
from mssoft.nn.distribute import LOGICAL_CPUS_VARIABLE, configure_logical_cpus

TIMEOUT = 300
# 26 lesion slices; --val-fraction 0.3 keeps 18 for training: batches of 6 (and validation
# batches of 6 + 2) split evenly over 2 devices, so the runs must agree to rounding.
TINY = ["--base-filters", "4", "--depth", "2", "--epochs", "2", "--val-fraction", "0.3"]
COLUMNS = ["epoch", "loss", "dice", "val_loss", "val_dice", "seconds", "collapsed"]


# `mssoft ARGS` with the training batches in a fixed order and not rotated. Under a distribution
# strategy Keras's fit draws one batch to build the model before the first epoch, which advances
# the per-epoch reshuffling of the pipeline: mirrored runs see the epochs' batches in another
# order than one device (see docs/how-to/gpus-and-machines.md). With a fixed order the loss
# curves must agree.
FIXED_ORDER_MSSOFT = textwrap.dedent(
    """
    import sys
    import mssoft.workflows.fit
    from mssoft.cli.main import cli
    from mssoft.nn.dataset import make_dataset

    def fixed_order(config, data):
        train, val = (make_dataset(data.slices, part, batch_size=config.batch_size, training=False)
                      for part in (data.split.train, data.split.val))
        return train, val

    mssoft.workflows.fit.make_datasets = fixed_order
    cli(sys.argv[1:], prog_name="mssoft")
    """
)


def mssoft_process(args, env=None, *, fixed_order=False):
    """``mssoft ARGS`` in a new Python process."""
    code = (
        FIXED_ORDER_MSSOFT
        if fixed_order
        else "from mssoft.cli.main import cli; cli(prog_name='mssoft')"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env={
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "-1",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            **(env or {}),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs):
    """[(exit code, stdout, stderr)] of each process; all are killed if one outlives the timeout."""
    try:
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            results.append((proc.returncode, out, err))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def history(folder):
    with (folder / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2 patients x 2 time points of 32x32x12 voxels with 26 lesion slices."""
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 32, 12))


def test_logical_cpus_need_a_positive_integer(monkeypatch):
    monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, "two")
    with pytest.raises(
        ConfigError, match=f"environment variable {LOGICAL_CPUS_VARIABLE}: expected an integer"
    ):
        configure_logical_cpus()
    with pytest.raises(ConfigError, match="`logical_cpus`: expected an integer >= 1"):
        configure_logical_cpus(0)
    monkeypatch.delenv(LOGICAL_CPUS_VARIABLE)
    assert configure_logical_cpus() is None


def test_logical_cpus_cannot_change_once_tensorflow_runs(monkeypatch):
    tf.constant(1.0)  # TensorFlow initialised (as in any test process) with 1 CPU device
    assert len(tf.config.list_logical_devices("CPU")) == 1
    assert configure_logical_cpus(1) == 1  # what it already has: nothing to do
    monkeypatch.setenv(LOGICAL_CPUS_VARIABLE, "2")
    with pytest.raises(ConfigError, match="before the process starts") as info:
        configure_logical_cpus()
    assert LOGICAL_CPUS_VARIABLE in str(info.value)


@pytest.mark.slow
def test_two_logical_cpus_give_the_single_device_loss_curve(data, tmp_path):
    two_cpus = {LOGICAL_CPUS_VARIABLE: "2"}
    mirrored = ["--strategy", "mirrored", "--devices", "CPU:0,CPU:1"]
    procs = [
        mssoft_process(
            [
                "fit",
                data,
                "--out",
                tmp_path / "single",
                *TINY,
                "--batch-size",
                6,
                "--strategy",
                "default",
            ],
            fixed_order=True,
        ),
        mssoft_process(
            ["fit", data, "--out", tmp_path / "mirrored", *TINY, "--batch-size", 6, *mirrored],
            two_cpus,
            fixed_order=True,
        ),
        # A last batch of 1 slice (21 % 4) would leave a device idle: refused before training.
        mssoft_process(
            ["fit", data, "--out", tmp_path / "odd", *TINY[:-2], "--batch-size", 4, *mirrored],
            two_cpus,
        ),
    ]
    (single_code, single_out, single_err), (code, out, err), (odd_code, _, odd_err) = finish(procs)
    assert single_code == 0, single_err[-3000:]
    assert code == 0, err[-3000:]

    record = json.loads((tmp_path / "mirrored" / "config.json").read_text())
    assert record["strategy"] == {
        "name": "MirroredStrategy",
        "replicas": 2,
        "devices": ["CPU:0", "CPU:1"],
    }
    assert "strategy MirroredStrategy: 2 replica(s) on CPU:0, CPU:1" in err
    assert out.startswith("epochs=2\tbest_epoch=")
    assert out.split("\t")[:3] == single_out.split("\t")[:3]

    rows, reference = history(tmp_path / "mirrored"), history(tmp_path / "single")
    assert list(rows[0]) == list(reference[0]) == COLUMNS
    for key in ("loss", "dice", "val_loss", "val_dice"):
        np.testing.assert_allclose(
            [float(r[key]) for r in rows],
            [float(r[key]) for r in reference],
            rtol=1e-4,
            atol=1e-6,
            err_msg=key,
        )
    assert float(rows[1]["loss"]) != float(rows[0]["loss"])  # it trained

    assert odd_code == 1
    assert (
        "Error: Invalid value for `--batch-size`: the last batch of the 21 training slices"
        in odd_err
    )
    assert "e.g. --batch-size" in odd_err
    assert not (tmp_path / "odd" / "config.json").exists()
