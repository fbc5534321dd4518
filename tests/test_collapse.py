"""The Dice-loss collapse: its flag in history.csv/config.json, fit's warning, and the guards."""

import csv
import json
import logging
import math

import keras
import numpy as np
import pytest
from conftest import write_isbi

from mssoft.nn.callbacks import collapse_epoch, is_collapsed
from mssoft.nn.unet import build_unet
from mssoft.nn.warmup import LinearWarmup, prior_logit
from mssoft.workflows.fit import build_model, fit, lesion_prior, prepare_data
from mssoft.workflows.settings import TrainConfig


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 32, 12))


class SinkTheHead(keras.callbacks.Callback):
    """Forces the collapse: from epoch ``at`` (0-based) on, the head outputs sigmoid(-1000) = 0."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_batch_begin(self, batch, logs=None):
        if self.epoch >= self.at:
            kernel, bias = self.model.get_layer("head").get_weights()
            self.model.get_layer("head").set_weights([np.zeros_like(kernel), bias * 0 - 1000.0])

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch


def config(root, out, **kwargs):
    settings = dict(epochs=3, base_filters=4, depth=2, batch_size=4, modalities="flair,t2")
    return TrainConfig(data=root, out=out, **{**settings, **kwargs})


def test_a_forced_collapse_is_flagged_and_reported(root, tmp_path, caplog):
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING, logger="mssoft"):
        result = fit(config(root, out), callbacks=[SinkTheHead(at=1)])
    assert result.collapsed_epoch == 2
    with (out / "history.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["collapsed"] for r in rows] == ["0", "1", "1"]
    assert float(rows[1]["loss"]) == 0.0 and float(rows[1]["dice"]) == 0.0
    record = json.loads((out / "config.json").read_text())
    assert record["result"]["collapsed_epoch"] == 2
    assert record["config"]["output_bias"] == "prior" and record["config"]["warmup_epochs"] == 1.0
    assert record["config"]["target_interpolation"] == "nearest"
    warning = " ".join(r.getMessage() for r in caplog.records if "collapsed to" in r.getMessage())
    assert "collapsed to an all-zero output at epoch 2" in warning
    assert "model.keras is from epoch 1, before the collapse" in warning
    assert "--normalization batch" in warning and "--learning-rate" in warning


def test_a_run_that_learns_is_not_flagged(root, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mssoft"):
        result = fit(config(root, tmp_path / "run", epochs=2))
    assert result.collapsed_epoch is None
    assert all(r["collapsed"] == 0 for r in result.history)
    assert not [r for r in caplog.records if "collapsed" in r.getMessage()]


def test_collapse_rule():
    assert is_collapsed({"loss": -0.0, "dice": 0.0})
    assert is_collapsed({"loss": -5e-5, "dice": 0.0})
    assert not is_collapsed({"loss": -0.02, "dice": 0.0})  # prior-level output, still learning
    assert not is_collapsed({"loss": 0.0, "dice": 0.1})
    assert not is_collapsed({"loss": math.nan, "dice": 0.0}) and not is_collapsed({})
    rows = [{"epoch": e, "loss": v, "dice": d} for e, v, d in [(1, -0.2, 0.3), (2, 0.0, 0.0)]]
    assert collapse_epoch(rows) == 2
    rows.append({"epoch": 3, "loss": -0.3, "dice": 0.4})  # recovered
    assert collapse_epoch(rows) is None


def test_prior_bias_and_warmup(root, tmp_path):
    assert prior_logit(0.5) == 0.0
    assert prior_logit(0.1) == pytest.approx(math.log(0.1 / 0.9))
    assert math.isfinite(prior_logit(0.0)) and prior_logit(0.0) < -9
    schedule = LinearWarmup(1e-3, 4)
    assert [float(schedule(s)) for s in range(6)] == pytest.approx(
        [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3]
    )
    assert float(LinearWarmup(1e-3, 0)(0)) == pytest.approx(1e-3)
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    assert isinstance(restored, LinearWarmup) and restored.warmup_steps == 4

    cfg = config(root, tmp_path / "unused")
    data = prepare_data(cfg)
    prior = lesion_prior(data)
    _, targets = data.slices.gather(data.split.train)
    assert prior == pytest.approx(float(targets.mean()), rel=1e-6) and 0 < prior < 0.5
    model = build_model(cfg, 2, lesion_prior=prior, steps_per_epoch=5)
    probs = model.predict(np.zeros((1, 16, 16, 2), np.float32), verbose=0)
    assert float(probs.mean()) == pytest.approx(prior, rel=1e-3)  # zero input: sigmoid(bias)
    # one epoch of 5 batches: the first step gets a fifth of the learning rate
    assert float(model.optimizer.learning_rate) == pytest.approx(cfg.learning_rate / 5)
    zero = build_model(
        TrainConfig(data=root, out=tmp_path, output_bias="zero", warmup_epochs=0),
        2,
        lesion_prior=prior,
    )
    assert float(zero.get_layer("head").get_weights()[1][0]) == 0.0


def test_batch_normalisation_option():
    model = build_unet((None, None, 2), base_filters=4, depth=2, normalization="batch")
    names = [layer.name for layer in model.layers]
    assert "enc1_norm1" in names and "dec1_norm2" in names
    assert "enc1_norm1" not in [
        layer.name for layer in build_unet((None, None, 2), base_filters=4, depth=2).layers
    ]
