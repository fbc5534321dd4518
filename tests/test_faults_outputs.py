"""Fault injection for output folders: untrusted model files, concurrent writers, full disks.

Each test reproduces a fault of one of these kinds and checks the command's answer: one
``Error:`` line naming the path or option, a non-zero exit, and nothing written where it must not
be (outside ``--out``, inside the input data or the run read, or in a folder another command
holds).

- a crafted export folder whose SavedModel writes a file when it runs;
- two commands writing one folder at once;
- a disk that fills up while a command writes;
- output folders inside the input data, and commands that fail or are interrupted;
- an export killed part-way, a damaged slice cache, a resumed run that fails.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from mssoft.cli.main import cli
from test_faults import (  # noqa: F401 (data and run_dir are fixtures, shared with that module)
    TINY,
    assert_one_error_line,
    data,
    make_run,
    run,
    run_dir,
)

from mssoft.errors import DataError
from mssoft.files.folders import FolderInUseError, folder_lock, write_config

SCANS = ("training01_01", "training01_02", "training02_01", "training02_02")
NO_SPACE = "No space left on device"


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    """A finished export folder of ``run_dir``."""
    out = tmp_path_factory.mktemp("exports") / "export"
    result = run("export", run_dir, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def listing(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` with its modification time (to prove nothing changed)."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


# --- R1: an export folder's SavedModel is a program ---------------------------------------------


def write_crafted_saved_model(folder: Path, target: Path, channels: int = 4) -> None:
    """A SavedModel with mssoft's signature whose serving function writes ``target``."""
    import tensorflow as tf

    class Crafted(tf.Module):
        @tf.function(
            input_signature=[tf.TensorSpec((None, None, None, channels), tf.float32, "slices")]
        )
        def serve(self, slices):
            tf.io.write_file(str(target), "written by the export's graph")
            return {"probabilities": tf.zeros_like(slices[..., :1])}

    module = Crafted()
    shutil.rmtree(folder, ignore_errors=True)
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})


@pytest.fixture
def crafted(exported, tmp_path):
    """A copy of a real export whose SavedModel writes ``tmp_path/outside.txt`` when it runs."""
    folder = tmp_path / "crafted"
    shutil.copytree(exported, folder)
    target = tmp_path / "outside.txt"
    write_crafted_saved_model(folder / "1", target)
    return folder, target


def test_predict_from_a_crafted_export_runs_no_code_of_it(crafted, data, tmp_path):
    folder, target = crafted
    result = run("predict", folder, data, "--out", tmp_path / "pred")
    assert result.exit_code == 0, result.output
    assert not target.exists()  # the export's model.keras was used, its graph never ran
    assert len(list((tmp_path / "pred").glob("*_seg.nii.gz"))) == len(SCANS)


@pytest.mark.parametrize("command", ["predict", "calibrate"])
def test_an_export_without_model_keras_is_refused_unless_trusted(command, crafted, data, tmp_path):
    folder, target = crafted
    (folder / "model.keras").unlink()
    out = tmp_path / "out"
    result = run(command, folder, data, "--out", out)
    assert_one_error_line(result, folder, "--trust-savedmodel", "program")
    assert not target.exists() and not out.exists()
    # the crafted graph is real: trusting it runs it (so the assertions above can fail)
    trusted = run(command, folder, data, "--out", out, "--trust-savedmodel")
    assert trusted.exit_code == 0, trusted.output
    assert target.exists()


def test_an_export_whose_model_keras_was_replaced_is_refused(exported, data, tmp_path):
    folder = tmp_path / "changed"
    shutil.copytree(exported, folder)
    other = make_run(tmp_path / "other", modalities=("flair", "t2", "t1", "pd"))
    shutil.copyfile(other / "model.keras", folder / "model.keras")
    (folder / "model.keras").write_bytes((folder / "model.keras").read_bytes() + b"\0")
    result = run("predict", folder, data, "--out", tmp_path / "pred")
    assert_one_error_line(result, folder / "model.keras", "SHA-256")
    assert not (tmp_path / "pred").exists()


def test_export_records_the_keras_model_it_carries(exported):
    from mssoft.nn.model_files import file_sha256

    info = json.loads((exported / "mssoft.json").read_text())
    assert info["keras_model"]["file"] == "model.keras"
    assert info["keras_model"]["sha256"] == file_sha256(exported / "model.keras")
    assert json.loads((exported / "config.json").read_text())["status"] == "complete"


# --- R2: one writer per output folder -----------------------------------------------------------


def test_concurrent_predict_overwrite_cannot_destroy_the_first_runs_outputs(
    data, run_dir, tmp_path, monkeypatch
):
    """The second ``predict --overwrite`` starts while the first is writing: it is refused."""
    import mssoft.workflows.predict as predict_module

    out = tmp_path / "pred"
    assert run("predict", run_dir, data, "--out", out, "--scans", SCANS[0]).exit_code == 0
    real = predict_module.segment_scan
    second = []

    def predict_and_interfere(*args, **kwargs):
        if not second:  # while the first run holds the folder, with outputs still to write
            second.append(CliRunner().invoke(cli, ["predict", str(run_dir), str(data), "--out",
                                                   str(out), "--overwrite"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_module, "segment_scan", predict_and_interfere)
    first = run("predict", run_dir, data, "--out", out, "--overwrite")
    assert first.exit_code == 0, first.output
    assert_one_error_line(second[0], out, "in use by another process", "mssoft predict")
    record = json.loads((out / "config.json").read_text())
    assert record["status"] == "complete" and sorted(record["scans"]) == sorted(SCANS)
    for names in record["scans"].values():
        assert all((out / name).is_file() for name in names.values())


def _locked_command(command, data, run_dir, exported, tmp_path):
    pred = tmp_path / "pred"
    if command == "evaluate":
        assert run("predict", run_dir, data, "--out", pred).exit_code == 0
    return {
        "predict": ["predict", run_dir, data],
        "calibrate": ["calibrate", run_dir, data],
        "evaluate": ["evaluate", pred, data],
        "build-masks": ["build-masks", data],
        "export": ["export", run_dir],
        "demo": ["demo", "--quick", "--epochs", 1],
    }[command]


@pytest.mark.parametrize(
    "command", ["predict", "calibrate", "evaluate", "build-masks", "export", "demo"]
)
def test_every_command_refuses_a_folder_another_process_writes(
    command, data, run_dir, exported, tmp_path
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("the other process's file")
    args = _locked_command(command, data, run_dir, exported, tmp_path)
    with folder_lock(out, command="other"):
        result = run(*args, "--out", out, "--overwrite")
    assert_one_error_line(result, out, "in use by another process")
    assert sorted(p.name for p in out.iterdir()) == [".mssoft.lock", "mine.txt"]


def test_status_complete_only_when_every_listed_output_exists(tmp_path):
    scans = {"a": {"prob": "a_prob.nii.gz", "seg": "a_seg.nii.gz"}}
    (tmp_path / "a_prob.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match="a_seg.nii.gz"):
        write_config(tmp_path, "predict", {}, status="complete", scans=scans)
    assert not (tmp_path / "config.json").exists()
    (tmp_path / "a_seg.nii.gz").write_bytes(b"")
    write_config(tmp_path, "predict", {}, status="complete", scans=scans)
    assert json.loads((tmp_path / "config.json").read_text())["status"] == "complete"


# --- R9: reading commands write nothing into what they read -------------------------------------


def test_reading_commands_leave_the_run_folder_untouched(data, tmp_path):
    run_dir = make_run(tmp_path / "run")
    before = listing(run_dir)
    for args in (
        ("predict", run_dir, data, "--out", tmp_path / "pred"),
        ("calibrate", run_dir, data, "--out", tmp_path / "calibration"),
        ("export", run_dir, "--out", tmp_path / "export"),
    ):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert listing(run_dir) == before, args
    assert not (run_dir / ".mssoft.lock").exists()


def test_check_not_in_use_creates_no_lock_file_and_still_sees_a_holder(tmp_path):
    from mssoft.files.folders import check_not_in_use

    folder = tmp_path / "run"
    folder.mkdir()
    check_not_in_use(folder, command="calibrate")
    assert not list(folder.iterdir())
    with folder_lock(folder, command="fit"):
        with pytest.raises(FolderInUseError, match="mssoft fit"):
            check_not_in_use(folder, command="calibrate")


# --- R5/R6: a full disk names the path and leaves nothing trusted -------------------------------


def _full_disk_on_nifti(monkeypatch):
    """Every NIfTI write fails as on a full disk: an OSError that names no file."""
    import nibabel

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(nibabel, "save", full)


@pytest.mark.parametrize("command", ["predict", "build-masks"])
def test_full_disk_while_writing_volumes_is_one_line_naming_the_file(
    command, data, run_dir, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    args = ["predict", run_dir, data] if command == "predict" else ["build-masks", data]
    _full_disk_on_nifti(monkeypatch)
    result = run(*args, "--out", out)
    line = assert_one_error_line(result, f"Error: {NO_SPACE}: {out}")
    assert ".partial" not in line and line.endswith(".nii.gz")
    assert not out.exists()  # nothing a later command could take for an output


def _full_disk_on_rename(monkeypatch):
    """Every atomic write fails as on a full disk (an OSError that names no file)."""
    import mssoft.files.atomic as atomic

    def full(src, dst):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(atomic.os, "replace", full)


def test_full_disk_in_evaluate_and_calibrate_is_one_line(data, run_dir, tmp_path, monkeypatch):
    pred = tmp_path / "pred"
    assert run("predict", run_dir, data, "--out", pred).exit_code == 0
    _full_disk_on_rename(monkeypatch)
    evaluated = run("evaluate", pred, data, "--out", tmp_path / "eval")
    assert_one_error_line(evaluated, f"Error: {NO_SPACE}: {tmp_path / 'eval'}")
    calibrated = run("calibrate", run_dir, data, "--out", tmp_path / "cal")
    assert_one_error_line(calibrated, f"Error: {NO_SPACE}: {tmp_path / 'cal' / 'calibration.json'}")
    assert not (tmp_path / "eval").exists() and not (tmp_path / "cal").exists()


def test_full_disk_during_export_is_one_line_naming_the_saved_model(
    run_dir, data, tmp_path, monkeypatch
):
    import tensorflow as tf

    def full(obj, path, *args, **kwargs):  # TensorFlow's own write of the SavedModel
        Path(path, "variables").mkdir(parents=True)
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{path}/variables/variables.data-00000-of-00001; {NO_SPACE}"
        )

    monkeypatch.setattr(tf.saved_model, "save", full)
    out = tmp_path / "export"
    result = run("export", run_dir, "--out", out)
    assert_one_error_line(result, f"Error: {NO_SPACE}: {out / '1'}")
    assert not out.exists()


def test_tensorflow_full_disk_errors_are_one_line(data, tmp_path, monkeypatch):
    """A checkpoint or TensorBoard write of ``fit`` that meets a full disk."""
    import tensorflow as tf

    import mssoft.workflows.fit as fit_module

    def full(config, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, f"{config.out}/backup/chief/ckpt.tempstate1; {NO_SPACE}"
        )

    monkeypatch.setattr(fit_module, "fit", full)
    result = run("fit", data, "--out", tmp_path / "run", "--epochs", 1)
    assert_one_error_line(result, f"Error: {NO_SPACE}: {tmp_path / 'run'}/backup/chief/ckpt")


def test_full_disk_while_fit_saves_its_model_names_the_file(data, tmp_path, monkeypatch):
    import keras

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(keras.Model, "save", full)
    out = tmp_path / "run"
    result = run("fit", data, "--out", out, "--epochs", 1, *TINY)
    assert_one_error_line(result, f"Error: {NO_SPACE}: {out / 'model.keras'}")
    assert not (out / "model.keras").exists()


# --- R10/R11/R14: where outputs may go; failed commands leave no folder -------------------------


@pytest.mark.parametrize(
    "command", ["fit", "calibrate", "predict", "build-masks", "evaluate", "cv"]
)
def test_out_inside_the_data_is_refused_before_anything_is_created(
    command, data, run_dir, tmp_path, monkeypatch
):
    import mssoft.files.folders as folders

    pred = tmp_path / "pred"
    if command == "evaluate":
        assert run("predict", run_dir, data, "--out", pred).exit_code == 0
    created = []
    real = folders._make_folder
    monkeypatch.setattr(
        folders, "_make_folder", lambda out, option: created.append(out) or real(out, option)
    )
    args = {
        "fit": ["fit", data, "--epochs", 1, *TINY],
        "calibrate": ["calibrate", run_dir, data],
        "predict": ["predict", run_dir, data],
        "build-masks": ["build-masks", data],
        "evaluate": ["evaluate", pred, data],
        "cv": ["cv", data, "--ratios", "1.0", "--epochs", 1, *TINY],
    }[command]
    inside = data / "training01" / "out"
    result = run(*args, "--out", inside)
    assert_one_error_line(result, inside, "inside the input data")
    assert not inside.exists()
    assert not [p for p in created if data in p.parents]


def test_calibrate_out_that_fails_leaves_no_folder(data, run_dir, tmp_path, monkeypatch):
    import mssoft.workflows.calibrate as calibrate_module

    def broken(*args, **kwargs):
        raise DataError("the model failed")

    monkeypatch.setattr(calibrate_module, "scan_dice_curves", broken)
    out = tmp_path / "new" / "calibration"
    assert_one_error_line(run("calibrate", run_dir, data, "--out", out), "the model failed")
    assert not (tmp_path / "new").exists()


def test_predict_interrupted_before_its_first_output_leaves_no_folder(
    data, run_dir, tmp_path, monkeypatch
):
    import mssoft.workflows.predict as predict_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "segment_scan", interrupted)
    out = tmp_path / "pred"
    result = run("predict", run_dir, data, "--out", out)
    assert result.exit_code == 130
    assert not out.exists()


# --- R12: a run's own calibration is not "for other runs" ---------------------------------------


def test_no_calibration_warning_for_an_export_or_a_copied_run(data, tmp_path):
    run_dir = make_run(tmp_path / "run")
    assert run("calibrate", run_dir, data).exit_code == 0
    assert run("export", run_dir, "--out", tmp_path / "export").exit_code == 0
    shutil.copytree(run_dir, tmp_path / "copy")
    for folder in (tmp_path / "export", tmp_path / "copy"):
        result = run("predict", folder, data, "--out", tmp_path / f"pred-{folder.name}")
        assert result.exit_code == 0, result.output
        assert "calibrated for the runs" not in result.stderr, result.stderr
        assert "threshold_source=calibration" in result.stdout
    # a calibration taken from another folder for other runs still warns
    result = run(
        "predict", tmp_path / "copy", data, "--out", tmp_path / "pred-other",
        "--calibration", run_dir,
    )
    assert result.exit_code == 0 and "calibrated for the runs" in result.stderr


# --- R13: an export killed part-way -------------------------------------------------------------

_KILLED_EXPORT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import mssoft.nn.saved_model as saved_model
    from mssoft.workflows.export import export_run

    def killed(model, path, *, multiple):
        Path(path).with_name(".1.0badc0de.partial").mkdir()  # the SavedModel being written
        os.kill(os.getpid(), signal.SIGKILL)

    saved_model.write_saved_model = killed
    export_run(sys.argv[1], sys.argv[2])
    """
)


def test_export_killed_part_way_is_named_incomplete_with_the_remedy(run_dir, data, tmp_path):
    out = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_EXPORT, str(run_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["status"] == "incomplete"
    for command in ("predict", "calibrate"):
        result = run(command, out, data, "--out", tmp_path / command)
        assert_one_error_line(
            result, out, "an incomplete export", "delete it and run mssoft export again"
        )
    assert_one_error_line(run("export", run_dir, "--out", out), "incomplete", "--overwrite")
    again = run("export", run_dir, "--out", out, "--overwrite")
    assert again.exit_code == 0, again.output
    assert not list(out.glob(".*partial*"))
    assert run("predict", out, data, "--out", tmp_path / "pred").exit_code == 0


# --- R15: a damaged slice cache; a resumed run keeps its result ---------------------------------


def _cache_one_scan(folder: Path):
    from mssoft.files.slice_cache import write_cached_slices

    images = np.ones((3, 4, 5, 2), np.float32)
    targets = np.zeros((3, 4, 5, 1), np.float32)
    key = {"format": 1, "files": [], "what": "test"}
    write_cached_slices(folder, "s1", images, targets, np.arange(3), 10, key)
    return key


def test_a_truncated_slice_cache_is_rebuilt_with_a_warning(tmp_path, caplog):
    from mssoft.files.layout import slice_cache_paths
    from mssoft.files.slice_cache import read_cached_slices

    key = _cache_one_scan(tmp_path)
    assert read_cached_slices(tmp_path, "s1", key) is not None
    images = slice_cache_paths(tmp_path, "s1")[0]
    images.write_bytes(images.read_bytes()[:-40])
    with caplog.at_level("WARNING"):
        assert read_cached_slices(tmp_path, "s1", key) is None  # rebuilt by the caller
    assert "damaged slice cache of s1" in caplog.text and "truncated" in caplog.text


def test_a_slice_cache_truncated_while_training_names_the_remedy(tmp_path):
    from mssoft.files.layout import slice_cache_paths
    from mssoft.files.slice_cache import read_cached_slices

    key = _cache_one_scan(tmp_path)
    images, _, _, _ = read_cached_slices(tmp_path, "s1", key)
    path = slice_cache_paths(tmp_path, "s1")[0]
    path.write_bytes(path.read_bytes()[:-40])  # after the check: read per batch
    with pytest.raises(OSError, match="delete the folder .* or resume with --slice-cache memory"):
        images[2]


@pytest.mark.slow
def test_fit_resume_over_a_truncated_slice_cache_rebuilds_it_and_keeps_the_result(
    data, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    args = ("fit", data, "--out", out, "--slice-cache", "disk", *TINY)
    assert run(*args, "--epochs", 1).exit_code == 0
    result_block = json.loads((out / "config.json").read_text())["result"]
    cached = sorted((out / "slice_cache").glob("*_images.npy"))[0]
    cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    # a resumed run that then fails keeps the result of the last finished training
    import mssoft.workflows.fit as fit_module

    def full(*a, **k):
        raise OSError(errno.ENOSPC, NO_SPACE, str(out / "history.csv"))

    monkeypatch.setattr(fit_module, "_fit_keras", full)
    failed = run(*args, "--epochs", 2, "--resume")
    assert_one_error_line(failed, f"{NO_SPACE}: {out / 'history.csv'}")
    assert "damaged slice cache" in failed.stderr
    assert json.loads((out / "config.json").read_text())["result"] == result_block
    monkeypatch.undo()
    resumed = run(*args, "--epochs", 2, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "config.json").read_text())["result"]["epochs"] == 2


def test_no_lock_file_is_left_in_a_new_folder_of_a_refused_command(tmp_path):
    """A folder this process created for a command that then failed is removed with its lock."""
    out = tmp_path / "a" / "b"
    with pytest.raises(DataError):
        with folder_lock(out, command="predict"):
            raise DataError("failed")
    assert not (tmp_path / "a").exists()
    assert os.listdir(tmp_path) == []
