import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.errors import ConfigError
from mssoft.nn.model_files import load_run_model
from mssoft.workflows.fit import fit
from mssoft.workflows.settings import MaskConfig, TrainConfig

TINY = ["--base-filters", "4", "--depth", "2", "--batch-size", "4"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def history(folder):
    with (folder / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """2 patients x 2 time points of 32x32x12 voxels, 4 modalities, 2 raters."""
    return write_isbi(tmp_path_factory.mktemp("data") / "isbi", shape=(32, 32, 12))


@pytest.fixture(scope="module")
def binary_run(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "binary"
    result = run("fit", root, "--out", out, "--epochs", 1, "--modalities", "flair,t2", *TINY)
    return result, out


def test_fit_writes_the_run_folder(binary_run):
    result, out = binary_run
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    assert result.stdout.startswith("epochs=1\tbest_epoch=1\tbest_val_loss=-")
    assert f"model={out / 'model.keras'}" in result.stdout
    assert "epoch 1/1: loss=" in result.stderr
    for name in ("model.keras", "config.json", "split.json", "history.csv"):
        assert (out / name).is_file(), name
    assert any((out / "logs").rglob("events.out.tfevents.*"))
    assert (out / "backup" / "training_metadata.json").is_file()
    assert not list(out.glob(".*partial*"))

    record = json.loads((out / "config.json").read_text())
    assert record["command"] == "fit"
    config = record["config"]
    assert config["modalities"] == ["flair", "t2"]
    assert config["rater"] == 1
    assert (config["base_filters"], config["depth"], config["seed"]) == (4, 2, 0)
    assert config["mask"] == {"source": "binary", "rater": 1, "folder": None, "config": None}
    scans = ["training01_01", "training01_02", "training02_01", "training02_02"]
    assert config["train_scans"] == scans
    assert set(config["val_scans"]) <= set(scans) and config["val_scans"]
    assert config["val_slices"] == round(0.2 * (config["train_slices"] + config["val_slices"]))
    assert record["result"]["epochs"] == 1 and record["result"]["monitor"] == "val_loss"
    split = json.loads((out / "split.json").read_text())
    assert sum(len(v["val"]) for v in split.values()) == config["val_slices"]

    rows = history(out)
    assert [r["epoch"] for r in rows] == ["1"]
    assert float(rows[0]["val_loss"]) == pytest.approx(record["result"]["best_loss"], rel=1e-4)
    assert -1.0 <= float(rows[0]["loss"]) <= 0.0 and 0.0 <= float(rows[0]["val_dice"]) <= 1.0


LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    import sys
    import numpy as np
    import keras
    model = keras.saving.load_model(sys.argv[1])  # the uncompiled inference model: Keras alone
    assert getattr(model, "loss", None) is None and "mssoft" not in sys.modules
    y = model.predict(np.zeros((2, 36, 16, 2), "float32"), verbose=0)
    from mssoft.nn.model_files import load_run_model
    z = load_run_model(sys.argv[2]).predict(np.ones((1, 20, 24, 2), "float32"), verbose=0)
    print("SHAPES", y.shape, y.dtype, z.shape, float(y.min()) >= 0.0, float(y.max()) <= 1.0)
    """
)


@pytest.mark.slow
def test_model_loads_in_a_fresh_process_on_any_grid(binary_run):
    _, out = binary_run
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, str(out / "model.keras"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHAPES (2, 36, 16, 1) float32 (1, 20, 24, 1) True True" in proc.stdout


def test_existing_run_is_refused_without_resume(binary_run, root):
    _, out = binary_run
    result = run("fit", root, "--out", out, "--epochs", 1, *TINY)
    assert result.exit_code == 1
    assert "already holds a `mssoft fit` run; pass --resume" in result.stderr
    assert [r["epoch"] for r in history(out)] == ["1"]


@pytest.mark.slow
def test_resume_continues_after_an_interrupted_run(root, tmp_path):
    out = tmp_path / "soft"

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise RuntimeError("killed")

    mask = MaskConfig(ratio=1.5, gamma=0.3, flair_threshold=None)
    config = TrainConfig(
        data=root, out=out, mask=mask, epochs=3, base_filters=4, depth=2, batch_size=4
    )
    with pytest.raises(RuntimeError, match="killed"):
        fit(config, callbacks=[Interrupt()])
    assert [r["epoch"] for r in history(out)] == ["1"]

    soft = ["--ratio", 1.5, "--flair-threshold", "none"]
    changed = run(
        "fit",
        root,
        "--out",
        out,
        "--resume",
        "--epochs",
        3,
        *soft,
        *TINY[:2],
        "--depth",
        3,
        "--batch-size",
        4,
    )
    assert changed.exit_code == 1 and "`--resume`" in changed.stderr and "depth" in changed.stderr

    result = run("fit", root, "--out", out, "--resume", "--epochs", 3, *soft, *TINY)
    assert result.exit_code == 0, result.output
    assert "epoch 1/3" not in result.stderr
    assert "epoch 2/3" in result.stderr and "epoch 3/3" in result.stderr
    assert [r["epoch"] for r in history(out)] == ["1", "2", "3"]
    record = json.loads((out / "config.json").read_text())
    assert record["result"]["epochs"] == 3
    assert record["config"]["mask"]["source"] == "computed"
    assert record["config"]["mask"]["config"]["ratio"] == 1.5

    again = run("fit", root, "--out", out, "--resume", "--epochs", 3, *soft, *TINY)
    assert (
        again.exit_code == 0 and "nothing to do" in again.stderr and "epoch 3/3" not in again.stderr
    )
    assert again.stdout.startswith("epochs=3\t")


@pytest.mark.slow
def test_soft_masks_folder_with_mixed_precision(root, tmp_path):
    masks = tmp_path / "masks"
    built = run("build-masks", root, "--out", masks, "--rater", 2, "--ratio", 1.3)
    assert built.exit_code == 0, built.output
    out = tmp_path / "run"
    result = run(
        "fit",
        root,
        "--out",
        out,
        "--masks",
        masks,
        "--epochs",
        1,
        "--val-fraction",
        0,
        "--mixed-precision",
        *TINY,
    )
    assert result.exit_code == 0, result.output
    assert "best_loss=-" in result.stdout  # no validation: the training loss is monitored
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["mask"]["source"] == "folder" and config["rater"] == 2
    assert config["mask"]["config"]["ratio"] == 1.3
    assert config["dtype_policy"] == "mixed_bfloat16" and config["val_scans"] == []
    assert keras.config.dtype_policy().name == "float32"  # restored after training
    model = load_run_model(out)
    y = model.predict(np.zeros((1, 32, 32, 4), np.float32), verbose=0)
    assert y.dtype == np.float32


@pytest.mark.parametrize(
    "args, message",
    [
        (["--masks", "{root}", "--ratio", "1.2"], "--ratio build masks on the fly"),
        (["--gamma", "0.5"], "--gamma would have no effect"),
        (["--per-lesion"], "--per-lesion would have no effect"),
        (["--modalities", "flair,dwi"], "--modalities"),
        (["--patients", "training09"], "unknown patient"),
        (["--rater", "3"], "rater 3"),
    ],
)
def test_bad_options_give_one_line(root, tmp_path, args, message):
    args = [a.format(root=root) for a in args]
    result = run("fit", root, "--out", tmp_path / "r", "--epochs", 1, *args)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr


def test_config_validation():
    with pytest.raises(ConfigError, match="--val-fraction"):
        TrainConfig(data="d", out="o", val_fraction=1.0)
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig(data="d", out="o", epochs=0)
    assert TrainConfig(data="d", out="o", modalities="flair, t1").modalities == ("flair", "t1")


def test_help_lists_the_options():
    result = run("fit", "--help")
    assert result.exit_code == 0
    for option in (
        "--masks",
        "--ratio",
        "--rater",
        "--modalities",
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--base-filters",
        "--depth",
        "--seed",
        "--val-fraction",
        "--split",
        "--strategy",
        "--mixed-precision",
        "--resume",
    ):
        assert option in result.stdout


@pytest.mark.slow
def test_model_fit_example_runs():
    example = Path(__file__).parent.parent / "examples" / "train_with_model_fit.py"
    proc = subprocess.run(
        [sys.executable, str(example), "--epochs", "1"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "validation loss -" in proc.stdout and "Dice at 0.5:" in proc.stdout
