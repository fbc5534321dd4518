"""Fault injection: overwrites, interrupted commands, unwritable folders, concurrent runs.

Each test reproduces a fault a careful user met (an interrupted or failed command, a folder that
cannot be written, two runs on one folder, an unusual input file) and checks that the command
answers with one ``Error:`` line naming the path or option, and leaves no stale, half-written or
unusable output behind.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_isbi
from mssoft.cli.main import cli

from mssoft.files.folders import write_config

TINY = ["--base-filters", "4", "--depth", "2", "--batch-size", "4"]
SCANS = ("training01_01", "training01_02", "training02_01", "training02_02")


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_error_line(result, *needles):
    """Exit code 1, one ``Error:`` line on stderr naming every needle, no traceback."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert str(needle) in errors[0], errors[0]
    return errors[0]


def write_manifest_of(root: Path, scan_ids, path: Path, *, encoding="utf-8") -> Path:
    """A manifest listing some scans of an ISBI-layout folder (absolute paths)."""
    rows = []
    for scan_id in scan_ids:
        patient = scan_id.split("_")[0]
        pre = root / patient / "preprocessed"
        rows.append(
            {
                "scan": scan_id,
                "patient": patient,
                "flair": pre / f"{scan_id}_flair_pp.nii.gz",
                "t2": pre / f"{scan_id}_t2_pp.nii.gz",
                "mask1": root / patient / "masks" / f"{scan_id}_mask1.nii.gz",
            }
        )
    with path.open("w", newline="", encoding=encoding) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def make_run(run_dir: Path, modalities=("flair", "t1", "t2", "pd")) -> Path:
    """A stand-in `mssoft fit` run: a 1x1 convolution model and its config.json."""
    import keras

    run_dir.mkdir(parents=True)
    model = keras.Sequential(
        [
            keras.Input((None, None, len(modalities))),
            keras.layers.Conv2D(1, 1, activation="sigmoid"),
        ]
    )
    kernel = np.zeros((1, 1, len(modalities), 1), np.float32)
    kernel[0, 0, 0, 0] = 2.0
    model.layers[0].set_weights([kernel, np.full(1, -3.0, np.float32)])
    model.save(run_dir / "model.keras")
    write_config(run_dir, "fit", {"modalities": list(modalities), "rater": 1})
    return run_dir


def zero_flair(root: Path, scan_id: str) -> Path:
    patient = scan_id.split("_")[0]
    path = root / patient / "preprocessed" / f"{scan_id}_flair_pp.nii.gz"
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.float32), image.affine), path)
    return path


def truncate_voxels(path: Path) -> None:
    """Cut a .nii.gz file's voxel data in half; its header stays readable."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2 patients x 2 time points of 24x28x20 voxels."""
    return write_isbi(tmp_path_factory.mktemp("faults") / "isbi")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "run")


# --- 1. --overwrite replaces the whole earlier output set ----------------------------------------


def test_build_masks_overwrite_with_fewer_scans_leaves_no_stale_masks(data, tmp_path):
    out = tmp_path / "soft"
    assert run("build-masks", data, "--out", out, "--ratio", 1.4).exit_code == 0
    assert sorted(p.name for p in out.glob("*_softmask.nii.gz")) == [
        f"{s}_softmask.nii.gz" for s in SCANS
    ]
    (out / "notes.txt").write_text("mine")  # not mssoft's: must survive an overwrite
    two = write_manifest_of(data, SCANS[:2], tmp_path / "two.csv")
    result = run("build-masks", two, "--out", out, "--overwrite", "--ratio", 1.1)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*_softmask.nii.gz")) == [
        f"{s}_softmask.nii.gz" for s in SCANS[:2]
    ]
    assert (out / "notes.txt").read_text() == "mine"
    record = json.loads((out / "config.json").read_text())
    assert record["config"]["ratio"] == 1.1 and sorted(record["scans"]) == list(SCANS[:2])
    assert record["status"] == "complete"
    # fit on all four scans cannot silently mix in the ratio-1.4 masks any more
    fitted = run("fit", data, "--out", tmp_path / "run", "--masks", out, "--epochs", 1, *TINY)
    assert_one_error_line(fitted, "training02_01")
    assert not (tmp_path / "run").exists()


def test_predict_overwrite_with_fewer_scans_leaves_no_stale_segmentations(data, run_dir, tmp_path):
    out = tmp_path / "pred"
    assert run("predict", run_dir, data, "--out", out).exit_code == 0
    assert len(list(out.glob("*_seg.nii.gz"))) == 4
    result = run("predict", run_dir, data, "--out", out, "--overwrite", "--scans", SCANS[0])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [
        f"{SCANS[0]}_prob.nii.gz",
        f"{SCANS[0]}_seg.nii.gz",
    ]
    # evaluate cannot score the other scans' segmentations of the earlier prediction
    evaluated = run("evaluate", out, data, "--out", tmp_path / "eval")
    assert_one_error_line(evaluated, "training01_02")
    assert not (tmp_path / "eval").exists()


# --- 2. an unwritable --out is one line ----------------------------------------------------------


def _fail_replace(monkeypatch):
    """Every atomic rename fails as on a read-only folder."""
    import mssoft.files.atomic as atomic

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(atomic.os, "replace", refuse)


def test_unwritable_out_of_build_masks_predict_evaluate_is_one_line(
    data, run_dir, tmp_path, monkeypatch
):
    pred = tmp_path / "pred"
    assert run("predict", run_dir, data, "--out", pred).exit_code == 0
    _fail_replace(monkeypatch)
    for args, out in (
        (("build-masks", data), tmp_path / "soft"),
        (("predict", run_dir, data), tmp_path / "pred2"),
        (("evaluate", pred, data), tmp_path / "eval"),
    ):
        result = run(*args, "--out", out)
        line = assert_one_error_line(result, out, "Permission denied")
        assert ".partial" not in line
        assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_unwritable_calibration_is_one_line(data, tmp_path, monkeypatch):
    run_dir = make_run(tmp_path / "run")
    _fail_replace(monkeypatch)
    result = run("calibrate", run_dir, data)
    assert_one_error_line(result, run_dir / "calibration.json", "Permission denied")


@pytest.mark.parametrize("command", ["build-masks", "fit", "predict", "evaluate", "cv", "demo"])
def test_out_that_cannot_be_created_is_one_line(command, data, run_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = blocker / "sub"  # mkdir fails, even for root
    args = {
        "build-masks": ["build-masks", data],
        "fit": ["fit", data, "--epochs", 1, *TINY],
        "predict": ["predict", run_dir, data],
        "evaluate": ["evaluate", tmp_path / "pred", data],
        "cv": ["cv", data, "--ratios", "1.0", "--epochs", 1, *TINY],
        "demo": ["demo", "--epochs", 1],
    }[command]
    if command == "evaluate":
        assert run("predict", run_dir, data, "--out", tmp_path / "pred").exit_code == 0
    result = run(*args, "--out", out)
    assert_one_error_line(result, out)


_NOBODY = 65534


def _as_user(uid: int, function) -> tuple[int, str]:
    """Run ``function()`` -> (exit code, stderr) in a forked child that runs as ``uid``.

    The child forks from this process, so it needs no file of the interpreter or of the packages
    that this process has already imported (``/root`` may be closed to other users).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, run, report through the pipe, never return
        code = 99
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            exit_code, stderr = function()
            os.write(write_fd, json.dumps([exit_code, stderr]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and report, "the unprivileged child failed"
    exit_code, stderr = json.loads(report)
    return exit_code, stderr


def test_read_only_out_as_a_non_root_user(data, tmp_path):
    """A real read-only folder, for a user the permissions apply to (root ignores them)."""
    if os.geteuid() == 0 and not hasattr(os, "fork"):
        pytest.skip("running as root without os.fork: cannot drop privileges")
    base = Path(tempfile.mkdtemp(prefix="mssoft-ro-"))  # /tmp/pytest-of-root is root-only
    try:
        shutil.copytree(data, base / "isbi")
        # load every module build-masks needs while still privileged
        assert run("build-masks", base / "isbi", "--out", base / "warm-up").exit_code == 0
        shutil.rmtree(base / "warm-up")
        read_only = base / "ro"
        read_only.mkdir()
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        read_only.chmod(0o555)
        for out in (read_only / "soft", read_only):

            def build(out=out):
                result = run("build-masks", base / "isbi", "--out", out)
                return result.exit_code, result.stderr

            exit_code, stderr = _as_user(_NOBODY, build) if os.geteuid() == 0 else build()
            assert exit_code == 1, stderr
            errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
            assert len(errors) == 1 and "Traceback" not in stderr, stderr
            assert str(read_only) in errors[0] and "Permission denied" in errors[0], stderr
        assert not list(read_only.iterdir())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_tensorflow_file_errors_are_one_line(data, tmp_path, monkeypatch):
    """TensorFlow's own file errors (TensorBoard logs, checkpoints) are one line too."""
    import tensorflow as tf

    import mssoft.workflows.fit as fit_module

    def refuse(config, **kwargs):
        raise tf.errors.PermissionDeniedError(None, None, f"{config.out}/logs; Permission denied")

    monkeypatch.setattr(fit_module, "fit", refuse)
    result = run("fit", data, "--out", tmp_path / "run", "--epochs", 1)
    assert_one_error_line(result, tmp_path / "run", "Permission denied")


# --- 3. a build-masks that fails part-way leaves a reusable folder -------------------------------


def test_failed_build_masks_marks_the_folder_incomplete_and_can_be_rerun(data, tmp_path):
    broken = tmp_path / "isbi"
    shutil.copytree(data, broken)
    last = broken / "training02" / "preprocessed" / "training02_02_flair_pp.nii.gz"
    intact = last.read_bytes()
    truncate_voxels(last)  # the corrupt last scan: header fine, voxels cut short
    out = tmp_path / "soft"
    failed = run("build-masks", broken, "--out", out)
    assert_one_error_line(failed, last)
    assert not list(out.glob(".*partial*"))
    record = json.loads((out / "config.json").read_text())
    assert record["command"] == "build-masks" and record["status"] == "incomplete"

    fitted = run("fit", broken, "--out", tmp_path / "run", "--masks", out, "--epochs", 1, *TINY)
    assert_one_error_line(fitted, out, "incomplete")
    assert not (tmp_path / "run").exists()

    again = run("build-masks", broken, "--out", out)
    assert_one_error_line(again, out, "--overwrite")
    last.write_bytes(intact)
    rerun = run("build-masks", broken, "--out", out, "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "config.json").read_text())["status"] == "complete"
    assert len(list(out.glob("*_softmask.nii.gz"))) == 4


def test_build_masks_failing_before_its_first_mask_leaves_no_folder(data, tmp_path):
    broken = tmp_path / "isbi"
    shutil.copytree(data, broken)
    truncate_voxels(broken / "training01" / "masks" / "training01_01_mask1.nii.gz")
    out = tmp_path / "new" / "soft"
    assert_one_error_line(run("build-masks", broken, "--out", out), "training01_01_mask1")
    assert not out.exists()
    existing = tmp_path / "empty"
    existing.mkdir()
    assert_one_error_line(run("build-masks", broken, "--out", existing), "training01_01_mask1")
    assert existing.is_dir() and not any(existing.iterdir())  # the user's folder stays


# --- 4. one fit per run folder -------------------------------------------------------------------


def test_fit_on_a_folder_locked_by_another_run_fails_at_once(data, tmp_path):
    from mssoft.files.folders import folder_lock

    out = tmp_path / "run"
    with folder_lock(out, command="fit"):
        result = run("fit", data, "--out", out, "--epochs", 1, *TINY)
    assert_one_error_line(result, out, "another")
    assert [p.name for p in out.iterdir()] == [".mssoft.lock"]
    again = run("fit", data, "--out", out, "--epochs", 1, *TINY)  # lock released: usable
    assert again.exit_code == 0, again.output


_FIT_SCRIPT = """
import sys
from mssoft.cli.main import cli
sys.argv = ["mssoft", "fit", *sys.argv[1:]]
cli()
"""


def _start_fit(data, out, *extra, env=None):
    return subprocess.Popen(
        [sys.executable, "-c", _FIT_SCRIPT, str(data), "--out", str(out), *map(str, extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def _history_epochs(out: Path) -> list[str]:
    path = out / "history.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row["epoch"] for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_two_fits_started_together_on_one_new_folder(data, tmp_path):
    out = tmp_path / "run"
    first = _start_fit(data, out, "--epochs", 50, *TINY)
    try:
        deadline = time.monotonic() + 120
        while not (out / ".mssoft.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = _start_fit(data, out, "--epochs", 1, *TINY)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1, err
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and str(out) in errors[0] and "another" in errors[0], err
        assert "Traceback" not in err
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.communicate()


# --- kill -9 during a checkpoint write, then --resume --------------------------------------------

_KILL_SCRIPT = """
import os, sys
import mssoft.files.atomic as atomic

real = atomic.os.replace
seen = []

def replace(src, dst):
    if str(dst).endswith("model.keras"):
        seen.append(dst)
        if len(seen) == 2:  # the second epoch's checkpoint: die half-way through it
            os.kill(os.getpid(), 9)
    return real(src, dst)

atomic.os.replace = replace
from mssoft.cli.main import cli
sys.argv = ["mssoft", "fit", *sys.argv[1:]]
cli()
"""


@pytest.mark.slow
def test_kill_during_a_checkpoint_write_then_resume(data, tmp_path):
    out = tmp_path / "run"
    args = [str(data), "--out", str(out), "--epochs", 3, "--val-fraction", 0.25, *TINY]
    killed = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, *map(str, args)], capture_output=True, text=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert list(out.glob(".model.*.partial.keras"))  # the half-written checkpoint is left
    epochs_before = _history_epochs(out)
    assert epochs_before in (["1"], ["1", "2"])

    resumed = run("fit", *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert _history_epochs(out) == ["1", "2", "3"]
    assert not list(out.glob(".*partial*"))  # the stale temporary file is cleaned up
    assert (out / "model.keras").is_file()


# --- 5. manifests with a byte-order mark ---------------------------------------------------------


def test_manifest_with_a_byte_order_mark(data, tmp_path):
    from mssoft.files.scans import discover_scans

    manifest = write_manifest_of(data, SCANS, tmp_path / "excel.csv", encoding="utf-8-sig")
    assert manifest.read_bytes().startswith(b"\xef\xbb\xbf")
    assert [s.scan_id for s in discover_scans(manifest)] == list(SCANS)
    result = run("build-masks", manifest, "--out", tmp_path / "soft")
    assert result.exit_code == 0, result.output


# --- 6. the same input checks in every command ---------------------------------------------------


@pytest.fixture(scope="module")
def zero_flair_data(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero") / "isbi"
    shutil.copytree(data, root)
    return root, zero_flair(root, "training01_01")  # the first scan: fails before any write


@pytest.mark.parametrize("threshold", ["p50", "none"])
def test_build_masks_refuses_an_all_zero_flair(zero_flair_data, tmp_path, threshold):
    root, flair = zero_flair_data
    out = tmp_path / "soft"
    result = run("build-masks", root, "--out", out, "--flair-threshold", threshold)
    assert_one_error_line(result, flair, "no non-zero voxel")
    assert not out.exists()


def test_fit_refuses_an_all_zero_flair(zero_flair_data, tmp_path):
    root, flair = zero_flair_data
    out = tmp_path / "run"
    result = run("fit", root, "--out", out, "--epochs", 1, *TINY)
    assert_one_error_line(result, flair, "no non-zero voxel")
    assert not out.exists()  # 7: no empty folder left behind


def test_predict_refuses_an_all_zero_flair(zero_flair_data, run_dir, tmp_path):
    root, flair = zero_flair_data
    out = tmp_path / "pred"
    result = run("predict", run_dir, root, "--out", out)
    assert_one_error_line(result, flair, "no non-zero voxel")
    assert not out.exists()


# --- 7. option names, empty folders, Ctrl-C ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"), [("--ratios", "0.5"), ("--gammas", "2"), ("--gammas", "-0.1")]
)
def test_cv_grid_errors_name_the_cv_option(data, tmp_path, option, value):
    out = tmp_path / "cv"
    result = run("cv", data, "--out", out, option, value, "--epochs", 1)
    line = assert_one_error_line(result, f"`{option}`", value)
    assert f"`{option[:-1]}`" not in line
    assert not out.exists()


def test_ctrl_c_of_fit_says_how_to_resume(data, tmp_path, monkeypatch):
    import mssoft.workflows.fit as fit_module

    def interrupted(config, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_module, "fit", interrupted)
    out = tmp_path / "run"
    result = run("fit", data, "--out", out, "--epochs", 1)
    assert result.exit_code == 130
    assert "Aborted" in result.stderr and "--resume" in result.stderr
    assert str(out) in result.stderr


def test_ctrl_c_of_build_masks_names_the_incomplete_folder(data, tmp_path, monkeypatch):
    import mssoft.workflows.build_masks as build_masks

    calls = []
    real = build_masks.write_volume

    def write_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build_masks, "write_volume", write_then_stop)
    out = tmp_path / "soft"
    result = run("build-masks", data, "--out", out)
    assert result.exit_code == 130 and "Aborted" in result.stderr
    assert json.loads((out / "config.json").read_text())["status"] == "incomplete"
    assert len(list(out.glob("*_softmask.nii.gz"))) == 1


def test_predict_killed_part_way_leaves_an_incomplete_folder_evaluate_refuses(
    data, run_dir, tmp_path
):
    out = tmp_path / "pred"
    script = textwrap.dedent(
        """
        import os, sys
        import mssoft.workflows.predict_outputs as predict
        real = predict.write_volume
        calls = []
        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), 9)
            return real(*args, **kwargs)
        predict.write_volume = write
        from mssoft.cli.main import cli
        sys.argv = ["mssoft", "predict", *sys.argv[1:]]
        cli()
        """
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(run_dir), str(data), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((out / "config.json").read_text())["status"] == "incomplete"
    result = run("evaluate", out, data, "--out", tmp_path / "eval", "--scans", SCANS[0])
    assert_one_error_line(result, out, "incomplete")
    rerun = run("predict", run_dir, data, "--out", out, "--overwrite")
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "config.json").read_text())["status"] == "complete"


# --- concurrent cv runs on one sweep folder ------------------------------------------------------


def test_cv_skips_a_cell_another_process_is_running_and_never_deletes_it(
    data, tmp_path, monkeypatch
):
    """Two `cv` runs on one folder: a cell in progress elsewhere is skipped, its files kept."""
    import mssoft.experiments.cv.run as cv_run
    from mssoft.experiments.cv.run import CVConfig, run_cells
    from mssoft.files.folders import folder_lock

    ran = []

    def fake_cell(cell, config, modalities, masks, patients, **_):
        ran.append(cell.key)
        folder = cell.folder(config.out)
        assert not (folder / "stale.txt").exists()  # an interrupted cell starts afresh
        record = {"scans": []}
        (folder / "result.json").write_text(json.dumps(record))
        return {"threshold": 0.5, "scans": [], "val_dice": None, "collapsed_epoch": None}

    monkeypatch.setattr(cv_run, "_run_cell", fake_cell)
    config = CVConfig(data=data, out=tmp_path / "cv", ratios=(1.0,), gammas=(0.3,))
    plan = cv_run._plan(config)
    cv_run._prepare_out(config, plan[1])
    busy, stale = plan[3]
    busy_folder, stale_folder = busy.folder(config.out), stale.folder(config.out)
    stale_folder.mkdir(parents=True)
    (stale_folder / "stale.txt").write_text("left by a killed run")
    with folder_lock(busy_folder, command="cv"):
        (busy_folder / "run").mkdir()  # the other process's work in progress
        assert run_cells(config) == 1
        assert (busy_folder / "run").is_dir()
    assert ran == [stale.key]
    assert run_cells(config) == 1 and ran == [stale.key, busy.key]  # free now: it runs


def test_cv_shards_build_each_mask_folder_once(data, tmp_path):
    """A shard that finds another building a grid point's masks waits, then reuses them."""
    import threading

    import mssoft.experiments.cv.run as cv_run
    from mssoft.experiments.cv.plan import GridPoint
    from mssoft.experiments.cv.run import CVConfig
    from mssoft.files.folders import folder_lock
    from mssoft.workflows.settings import MaskConfig

    config = CVConfig(
        data=data, out=tmp_path / "cv", ratios=(1.2,), mask=MaskConfig(flair_threshold="none")
    )
    scans, modalities, _, _ = cv_run._plan(config)
    cv_run._prepare_out(config, modalities)
    point = GridPoint(1.2, 0.3)
    folder = tmp_path / "cv" / "masks" / point.name
    done = []
    with folder_lock(folder, command="cv"):  # another shard is building them
        waiter = threading.Thread(
            target=lambda: done.append(cv_run._mask_folder(config, point, scans))
        )
        waiter.start()
        waiter.join(timeout=2)
        assert waiter.is_alive() and not done  # it waits instead of building alongside
        cv_run.build_soft_masks(scans, folder, cv_run.MaskConfig(ratio=1.2, flair_threshold=None))
        built = {p.name: p.stat().st_mtime_ns for p in folder.glob("*_softmask.nii.gz")}
    waiter.join(timeout=60)
    assert done == [folder]
    assert {p.name: p.stat().st_mtime_ns for p in folder.glob("*_softmask.nii.gz")} == built


def test_calibrate_refuses_a_run_that_is_training(data, tmp_path):
    from mssoft.files.folders import folder_lock

    run_dir = make_run(tmp_path / "run")
    with folder_lock(run_dir, command="fit"):
        result = run("calibrate", run_dir, data)
    assert_one_error_line(result, run_dir, "mssoft fit")
    assert not (run_dir / "calibration.json").exists()


def test_predict_with_a_corrupt_last_scan(data, run_dir, tmp_path):
    broken = tmp_path / "isbi"
    shutil.copytree(data, broken)
    last = broken / "training02" / "preprocessed" / "training02_02_t2_pp.nii.gz"
    truncate_voxels(last)
    out = tmp_path / "pred"
    assert_one_error_line(run("predict", run_dir, broken, "--out", out), last)
    assert not list(out.glob(".*partial*"))
    assert json.loads((out / "config.json").read_text())["status"] == "incomplete"
    assert len(list(out.glob("*_seg.nii.gz"))) == 3  # the scans before it are complete
    assert_one_error_line(run("evaluate", out, broken, "--out", tmp_path / "eval"), "incomplete")
    fixed = run("predict", run_dir, data, "--out", out, "--overwrite")
    assert fixed.exit_code == 0, fixed.output
