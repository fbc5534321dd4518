"""The custom training loop of multi-worker runs (mssoft.nn.multiworker_loop).

In-process tests check the loop against Keras ``model.fit`` on one device; the slow tests start two
worker processes on localhost (free ports from the OS, a timeout, always killed in ``finally``).
"""

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.errors import ConfigError
from mssoft.nn.distribute import get_strategy, is_multi_worker, read_tf_config, worker_role
from mssoft.nn.losses import BinarisedDice, SoftDiceLoss
from mssoft.nn.model_files import load_run_model
from mssoft.nn.multiworker_loop import LoopResult, train_loop
from mssoft.nn.unet import build_unet

TIMEOUT = 240  # seconds for one cluster run (15 to 40 s on 2 busy cores)
# history.csv
COLUMNS = ["epoch", "loss", "dice", "val_loss", "val_dice", "seconds", "collapsed"]


# === TF_CONFIG and worker roles ===


def tf_config(ports, index):
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def test_read_tf_config():
    assert read_tf_config({}) is None
    assert read_tf_config({"TF_CONFIG": "  "}) is None
    spec = read_tf_config({"TF_CONFIG": tf_config([1, 2], 1)})
    assert spec["task"] == {"type": "worker", "index": 1}
    assert spec["cluster"]["worker"] == ["localhost:1", "localhost:2"]


@pytest.mark.parametrize(
    "value, match",
    [
        ("{not json", "not JSON"),
        ('["localhost:1"]', "expected"),
        ('{"cluster": {"worker": ["localhost:1"]}}', '"task" must be'),
        (
            '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": "0"}}',
            '"task" must be',
        ),
        (
            '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 1}}',
            "not in the cluster",
        ),
        (
            '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "chief", "index": 0}}',
            "not in the cluster",
        ),
    ],
)
def test_bad_tf_config_names_the_variable(value, match):
    with pytest.raises(ConfigError, match=match) as info:
        read_tf_config({"TF_CONFIG": value})
    assert "TF_CONFIG" in str(info.value) and "\n" not in str(info.value)


def test_single_process_is_its_own_chief():
    strategy = tf.distribute.get_strategy()
    assert worker_role(strategy).is_chief and worker_role(strategy).num_workers == 1
    assert not is_multi_worker(strategy)


def test_multiworker_strategy_errors_name_the_option(monkeypatch):
    with pytest.raises(ConfigError, match="`--devices`: strategy 'multiworker'"):
        get_strategy("multiworker", devices="CPU:0")
    monkeypatch.setenv("TF_CONFIG", "{oops")
    with pytest.raises(ConfigError, match="TF_CONFIG: not JSON"):
        get_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", tf_config(free_ports(2), 1))
    tf.constant(0.0)  # TensorFlow is initialised in this process: too late for collectives
    with pytest.raises(ConfigError, match="must be set up before TensorFlow initialises") as info:
        get_strategy("multiworker")
    assert "\n" not in str(info.value)


# === The loop in this process (default strategy) ===


def build_tiny():
    """A U-Net with 2 filters and 1 pooling, compiled as mssoft.workflows.fit.build_model does."""
    model = build_unet((None, None, 2), base_filters=2, depth=1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2), loss=SoftDiceLoss(), metrics=[BinarisedDice()]
    )
    return model


def datasets(shuffle=True):
    """14 training slices (batches of 4, the last one of 2) and 6 validation slices, 16x16."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 16, 16, 2)).astype("float32")
    y = (x[..., :1] > 0.7).astype("float32")
    train = tf.data.Dataset.from_tensor_slices((x[:14], y[:14]))
    if shuffle:
        train = train.shuffle(14, seed=3, reshuffle_each_iteration=True)
    val = tf.data.Dataset.from_tensor_slices((x[14:], y[14:])).batch(4)
    return train.batch(4), val


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_loop_matches_keras_fit_and_writes_the_run_folder(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_tiny()
    train, val = datasets()
    expected = model.fit(train, validation_data=val, epochs=3, verbose=0, shuffle=False).history

    keras.utils.set_random_seed(0)
    train, val = datasets()
    result = train_loop(
        tf.distribute.get_strategy(), build_tiny, train, val, epochs=3, run_dir=tmp_path
    )
    assert isinstance(result, LoopResult)
    assert (result.initial_epoch, result.epochs, result.monitor) == (0, 3, "val_loss")
    for key, values in expected.items():
        np.testing.assert_allclose(
            [row[key] for row in result.history], values, rtol=1e-5, atol=1e-6, err_msg=key
        )
    best = int(np.argmin(expected["val_loss"])) + 1
    assert result.best_epoch == best
    assert result.best_loss == pytest.approx(expected["val_loss"][best - 1], abs=1e-6)

    rows = read_csv(tmp_path / "history.csv")
    assert list(rows[0]) == COLUMNS
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    saved = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert saved.count_params() == result.model.count_params()
    assert tf.train.latest_checkpoint(str(tmp_path / "backup")).endswith("ckpt-3")
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))


def test_loop_resumes_after_the_last_checkpoint(tmp_path):
    """2 epochs, then 2 more from the checkpoint = 4 epochs in one go (weights, optimizer)."""
    keras.utils.set_random_seed(0)
    whole = train_loop(
        tf.distribute.get_strategy(),
        build_tiny,
        *datasets(shuffle=False),
        epochs=4,
        run_dir=tmp_path / "whole",
    )

    keras.utils.set_random_seed(0)
    first = train_loop(
        tf.distribute.get_strategy(),
        build_tiny,
        *datasets(shuffle=False),
        epochs=2,
        run_dir=tmp_path / "parts",
    )
    assert first.epochs == 2
    keras.utils.set_random_seed(1)  # restored weights must not depend on the new initialisation
    second = train_loop(
        tf.distribute.get_strategy(),
        build_tiny,
        *datasets(shuffle=False),
        epochs=4,
        run_dir=tmp_path / "parts",
    )
    assert (second.initial_epoch, second.epochs) == (2, 4)
    assert [int(r["epoch"]) for r in second.history] == [1, 2, 3, 4]
    for key in ("loss", "val_loss", "dice"):
        np.testing.assert_allclose(
            [r[key] for r in second.history],
            [r[key] for r in whole.history],
            rtol=1e-5,
            atol=1e-6,
            err_msg=key,
        )
    for a, b in zip(second.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert [r["epoch"] for r in read_csv(tmp_path / "parts" / "history.csv")] == [
        "1",
        "2",
        "3",
        "4",
    ]

    done = train_loop(
        tf.distribute.get_strategy(),
        build_tiny,
        *datasets(shuffle=False),
        epochs=4,
        run_dir=tmp_path / "parts",
    )
    assert (done.initial_epoch, done.epochs) == (4, 4)


def test_loop_refuses_the_state_of_a_keras_fit_run(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 1}')
    with pytest.raises(ConfigError, match="Keras fit"):
        train_loop(
            tf.distribute.get_strategy(), build_tiny, *datasets(), epochs=2, run_dir=tmp_path
        )


def test_loop_needs_a_compiled_model(tmp_path):
    def uncompiled():
        inputs = keras.Input((None, None, 2))
        return keras.Model(inputs, keras.layers.Conv2D(1, 1)(inputs))

    with pytest.raises(ConfigError, match="not compiled"):
        train_loop(
            tf.distribute.get_strategy(), uncompiled, *datasets(), epochs=1, run_dir=tmp_path
        )


# === Two worker processes on localhost ===


def free_ports(n):
    """``n`` distinct free TCP ports on the loopback interface, chosen by the OS."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def run_cluster(args, tmp_path, name, *, workers=2, timeout=TIMEOUT):
    """Run ``python ARGS`` as each worker of a localhost cluster; [(code, stdout, stderr)].

    Output goes to files (pipes could fill up and block a worker in the middle of a collective);
    every process still alive at the end (timeout, failure) is killed.
    """
    ports = free_ports(workers)
    procs, files = [], []
    try:
        for index in range(workers):
            env = {
                **os.environ,
                "TF_CONFIG": tf_config(ports, index),
                "CUDA_VISIBLE_DEVICES": "-1",
                "TMPDIR": str(tmp_path),  # for the temporary folders of the other workers
                "TF_CPP_MIN_LOG_LEVEL": "2",
            }
            out = open(tmp_path / f"{name}-{index}.out", "w+")
            err = open(tmp_path / f"{name}-{index}.err", "w+")
            files += [out, err]
            procs.append(
                subprocess.Popen(
                    [sys.executable, *map(str, args)], env=env, stdout=out, stderr=err, cwd=tmp_path
                )
            )
        for proc in procs:
            proc.wait(timeout=timeout)
        results = []
        for index, proc in enumerate(procs):
            texts = [(tmp_path / f"{name}-{index}.{ext}").read_text() for ext in ("out", "err")]
            results.append((proc.returncode, *texts))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for handle in files:
            handle.close()


# Every worker trains through mssoft.workflows.fit.fit, as `mssoft fit --strategy multiworker`
# does, with two callbacks: one saves the worker's weights after epoch 1 into a file of its own, the other
# stops the whole cluster at the start of epoch 2 (as a crash would).
CRASHING_WORKER = textwrap.dedent(
    """
    import json
    import os
    import sys
    import keras
    import numpy as np
    from mssoft.workflows.fit import TrainConfig, fit

    data, out = sys.argv[1], sys.argv[2]
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    class SaveWeights(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            np.savez(f"weights-{task}.npz", *self.model.get_weights())

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                os._exit(3)

    config = TrainConfig(data=data, out=out, epochs=2, base_filters=4, depth=2, batch_size=4,
                         strategy="multiworker", resume=True)
    fit(config, callbacks=[SaveWeights(), Crash()])
    """
)

# `mssoft` in a worker process.
MSSOFT = "from mssoft.cli.main import cli; cli(prog_name='mssoft')"
TINY = ["--base-filters", 4, "--depth", 2, "--batch-size", 4, "--epochs", 2]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """26 lesion slices of 32x32: 21 for training (the last batch of 4 holds one slice, so one
    worker gets none) and 5 for validation."""
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 32, 12))


def assert_rows_close(rows, reference):
    assert list(rows[0]) == list(reference[0]) == COLUMNS
    for key in COLUMNS[1:-2]:
        np.testing.assert_allclose(
            [float(r[key]) for r in rows],
            [float(r[key]) for r in reference],
            rtol=1e-4,
            atol=1e-6,
            err_msg=key,
        )


@pytest.mark.slow
def test_two_workers_crash_resume_and_train_like_one_device(data, tmp_path):
    run_dir, single_dir = tmp_path / "run", tmp_path / "single"
    (tmp_path / "worker.py").write_text(CRASHING_WORKER)

    # 1. Two workers train epoch 1, then the cluster goes down at the start of epoch 2.
    down = run_cluster(["worker.py", data, run_dir], tmp_path, "down")
    single = CliRunner().invoke(
        cli, [str(a) for a in ["fit", data, "--out", single_dir, *TINY, "--strategy", "default"]]
    )
    assert single.exit_code == 0, single.output
    assert [code for code, _, _ in down] == [3, 3], down[0][2][-3000:] + down[1][2][-3000:]
    assert tf.train.latest_checkpoint(str(run_dir / "backup")).endswith("ckpt-1")
    # The workers agree, and their epoch equals the epoch on one device with the same seed.
    weights = [np.load(tmp_path / f"weights-{i}.npz") for i in (0, 1)]
    assert len(weights[0].files) == len(load_run_model(run_dir).get_weights()) > 0
    for key in weights[0].files:
        np.testing.assert_array_equal(weights[0][key], weights[1][key])
    assert_rows_close(read_csv(run_dir / "history.csv"), read_csv(single_dir / "history.csv")[:1])

    # 2. Restarted with the documented command (docs/how-to/gpus-and-machines.md), the cluster
    #    continues after epoch 1.
    up = run_cluster(
        [
            "-c",
            MSSOFT,
            "fit",
            data,
            "--out",
            run_dir,
            *TINY,
            "--strategy",
            "multiworker",
            "--resume",
        ],
        tmp_path,
        "up",
    )
    for code, out, err in up:
        assert code == 0, err[-3000:]
        assert "resuming" in err and "after epoch 1" in err
        assert "epoch 1/2" not in err and "epoch 2/2: loss=" in err  # one line per epoch
        assert out.startswith("epochs=2\tbest_epoch=") and out.endswith(
            f"model={run_dir / 'model.keras'}\n"
        )
    assert up[0][1] == up[1][1]  # the same summary on both workers
    assert "worker 1 of 2 (not chief) done" in up[1][2]

    # Only the chief wrote the run folder: the files of a one-device run. Worker 1 removed its
    # temporary folder (the crash of step 1 left one: os._exit skips the clean-up).
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in single_dir.iterdir())
    assert len(list(tmp_path.glob("mssoft-worker1-*"))) == 1
    rows = read_csv(run_dir / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert_rows_close(rows[:1], read_csv(single_dir / "history.csv")[:1])
    record = json.loads((run_dir / "config.json").read_text())
    assert record["strategy"]["name"] == "MultiWorkerMirroredStrategy"
    assert (record["strategy"]["replicas"], record["strategy"]["workers"]) == (2, 2)
    assert record["result"]["epochs"] == 2
    assert tf.train.latest_checkpoint(str(run_dir / "backup")).endswith("ckpt-2")
    model = load_run_model(run_dir)
    assert model.predict(np.zeros((1, 32, 32, 4), "float32"), verbose=0).shape == (1, 32, 32, 1)

    # The state of a multi-worker run cannot be resumed by Keras fit.
    refused = CliRunner().invoke(
        cli,
        [
            str(a)
            for a in [
                "fit",
                data,
                "--out",
                run_dir,
                *TINY[:-1],
                3,
                "--resume",
                "--strategy",
                "default",
            ]
        ],
    )
    assert refused.exit_code == 1 and "--strategy multiworker" in refused.stderr
