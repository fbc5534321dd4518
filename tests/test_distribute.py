import json
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf

from mssoft.errors import ConfigError
from mssoft.nn.distribute import STRATEGIES, describe_strategy, get_strategy, normalise_devices


def test_default_and_auto_without_gpus():
    assert STRATEGIES == ("auto", "default", "mirrored", "multiworker")
    strategy = get_strategy("default")
    assert strategy is tf.distribute.get_strategy()
    assert describe_strategy(strategy) == {
        "name": "_DefaultDistributionStrategy",
        "replicas": 1,
        "devices": ["CPU:0"],
    }
    if not tf.config.list_logical_devices("GPU"):
        assert get_strategy("auto") is tf.distribute.get_strategy()
    one = get_strategy("default", devices="/cpu:0")
    assert isinstance(one, tf.distribute.OneDeviceStrategy)


def test_device_names_are_normalised():
    assert normalise_devices("/cpu:0") == ["CPU:0"]
    assert normalise_devices(["/job:localhost/replica:0/task:0/device:CPU:0"]) == ["CPU:0"]
    assert normalise_devices(None) is None


@pytest.mark.parametrize(
    "name, devices, match",
    [
        ("bogus", None, "--strategy"),
        ("mirrored", "GPU:7", "not visible"),
        ("default", "CPU:0,CPU:0", "listed twice"),
        ("auto", "nonsense-device", "--devices"),
        ("default", [], "empty"),
    ],
)
def test_impossible_combinations(name, devices, match):
    with pytest.raises(ConfigError, match=match):
        get_strategy(name, devices)


# TensorFlow cannot reconfigure devices once initialised: the 2-replica checks run in a fresh
# process that splits the CPU into two logical devices before anything else.
TWO_CPUS = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from mssoft.arrays.slices import SliceSet
    from mssoft.nn.dataset import make_dataset
    from mssoft.workflows.training_data import MaskSource
    from mssoft.nn.distribute import describe_strategy, get_strategy
    from mssoft.errors import ConfigError
    from mssoft.nn.losses import SoftDiceLoss, soft_dice_loss
    from mssoft.nn.unet import build_unet

    class ScalarSoftDice(keras.losses.Loss):
        # The mistake SoftDiceLoss avoids: one scalar for the whole batch.
        def call(self, y_true, y_pred):
            return keras.ops.mean(soft_dice_loss(y_true, y_pred))

    out = {}
    auto = get_strategy("auto", devices="CPU:0,CPU:1")
    out["auto"] = describe_strategy(auto)
    try:
        get_strategy("default", devices="CPU:0,CPU:1")
    except ConfigError as exc:
        out["default_error"] = str(exc)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 16, 16, 2)).astype("float32")
    y = rng.choice([0.0, 0.3, 1.0], size=(4, 16, 16, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    weights = build_unet((None, None, 2), base_filters=2, depth=1).get_weights()

    def one_step(strategy, loss):
        with strategy.scope():
            model = build_unet((None, None, 2), base_filters=2, depth=1)
            model.set_weights(weights)
            model.compile(keras.optimizers.SGD(0.5), loss=loss)
        history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
        return history["loss"][0], model.get_weights()

    single = tf.distribute.get_strategy()
    for name, loss in (("per_sample", SoftDiceLoss()), ("scalar", ScalarSoftDice())):
        loss_1, w_1 = one_step(single, loss)
        loss_2, w_2 = one_step(get_strategy("mirrored", ["CPU:0", "CPU:1"]), loss)
        out[name] = {
            "loss": [loss_1, loss_2],
            "max_weight_diff": max(float(np.abs(a - b).max()) for a, b in zip(w_1, w_2)),
            "max_step": max(float(np.abs(a - b).max()) for a, b in zip(w_1, weights)),
        }

    slices = SliceSet([x], [y], [np.arange(4)], ["s"], ["p"], [4], ("flair", "t1"), MaskSource())
    with auto.scope():
        model = build_unet((None, None, 2), base_filters=2, depth=1)
        model.compile(keras.optimizers.Adam(1e-3), loss=SoftDiceLoss())
    dataset = make_dataset(slices, np.arange(4), batch_size=4, training=True, seed=0)
    out["fit_losses"] = model.fit(dataset, epochs=2, shuffle=False, verbose=0).history["loss"]
    print("RESULT" + json.dumps(out))
    """
)


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_one_device():
    proc = subprocess.run(
        [sys.executable, "-c", TWO_CPUS], capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT") :])
    assert out["auto"]["name"] == "MirroredStrategy" and out["auto"]["replicas"] == 2
    assert out["auto"]["devices"] == ["CPU:0", "CPU:1"]
    assert "runs on one device" in out["default_error"]
    # Per-sample loss: same logged loss and same weights on 1 device and on 2 replicas.
    per_sample = out["per_sample"]
    assert per_sample["loss"][0] == pytest.approx(per_sample["loss"][1], rel=1e-5)
    assert per_sample["max_step"] > 1e-4
    assert per_sample["max_weight_diff"] < 1e-3 * per_sample["max_step"]
    # Control: a scalar loss is mis-scaled under MirroredStrategy (the test can tell them apart).
    scalar = out["scalar"]
    assert scalar["max_weight_diff"] > 0.1 * scalar["max_step"]
    # tf.data pipeline (numpy gather + rotation) trains under MirroredStrategy.
    assert len(out["fit_losses"]) == 2 and all(v == v for v in out["fit_losses"])
