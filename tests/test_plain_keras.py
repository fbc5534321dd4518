"""A new run's model.keras loads with plain Keras, in a process that never imports mssoft."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.nn.callbacks import save_inference_model
from mssoft.nn.model_files import load_run_model
from mssoft.workflows.fit import build_model
from mssoft.workflows.settings import TrainConfig

PLAIN_KERAS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    model = keras.saving.load_model(sys.argv[1])  # compile=True, the default
    out = model.predict_on_batch(np.zeros((1, 16, 16, int(sys.argv[2])), np.float32))
    leaked = sorted(m for m in sys.modules if m.split(".")[0] == "mssoft")
    print("OK", tuple(out.shape), getattr(model, "optimizer", None) is None, leaked)
    """
)


def load_in_plain_keras(path, channels):
    return subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS, str(path), str(channels)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_a_compiled_training_model_is_saved_as_a_plain_inference_model(tmp_path):
    config = TrainConfig(data=tmp_path, out=tmp_path, base_filters=2, depth=1, warmup_epochs=1)
    model = build_model(config, 2, steps_per_epoch=3)  # LinearWarmup schedule, SoftDiceLoss
    compiled = tmp_path / "compiled.keras"
    model.save(compiled)
    failed = load_in_plain_keras(compiled, 2)  # how runs were saved before: needs mssoft
    assert failed.returncode != 0 and "LinearWarmup" in failed.stderr + failed.stdout
    path = save_inference_model(model, tmp_path / "model.keras")
    proc = load_in_plain_keras(path, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK (1, 16, 16, 1) True []" in proc.stdout
    again = load_run_model(tmp_path)  # mssoft reads it too, with the same weights
    for a, b in zip(again.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_runs_saved_compiled_before_still_load_in_mssoft(tmp_path):
    model = build_model(TrainConfig(data=tmp_path, out=tmp_path, base_filters=2, depth=1), 1)
    model.save(tmp_path / "model.keras")  # the old way: compiled, custom schedule and loss
    loaded = load_run_model(tmp_path)
    assert isinstance(loaded, keras.Model) and loaded.count_params() == model.count_params()


@pytest.mark.slow
def test_model_keras_of_a_new_fit_run_loads_in_plain_keras(tmp_path):
    data = write_isbi(tmp_path / "isbi", patients=2, timepoints=1, shape=(32, 32, 12))
    out = tmp_path / "run"
    tiny = ["--base-filters", 4, "--depth", 2, "--batch-size", 4, "--epochs", 1]
    result = CliRunner().invoke(
        cli, [str(a) for a in ("fit", data, "--out", out, "--modalities", "flair", *tiny)]
    )
    assert result.exit_code == 0, result.output
    proc = load_in_plain_keras(out / "model.keras", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK (1, 16, 16, 1) True []" in proc.stdout
