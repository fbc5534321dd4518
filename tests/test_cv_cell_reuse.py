"""Reuse across the cells of a cross-validation sweep: same results, files read once, resumable."""

import json

import numpy as np
import pytest

from mssoft.errors import ConfigError
from mssoft.files.memo import Memo, active_memo, keep_in_memory
from mssoft.files.nifti import read_volume
from mssoft.files.scans import discover_scans, load_scan
from mssoft.synthetic import write_isbi_dataset
from mssoft.workflows.settings import TrainingSettings

#: Largest voxel difference of a cell's probabilities with and without reuse: the two runs do
#: the same arithmetic on the same arrays, so only floating-point noise (thread scheduling of
#: oneDNN reductions) may differ.
PROB_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("reuse") / "isbi"
    write_isbi_dataset(root, n_patients=2, timepoints=2, shape=(32, 40, 24), seed=3, n_lesions=4)
    return root


def test_scans_are_read_once_inside_the_memo_and_shared_read_only(data):
    scan = discover_scans(data)[0]
    outside = load_scan(scan, modalities=["flair"], rater=1)
    assert load_scan(scan, modalities=["flair"], rater=1) is not outside
    assert active_memo() is None
    with keep_in_memory(2**30) as memo:
        first = load_scan(scan, modalities=["flair"], rater=1)
        again = load_scan(scan, modalities=["flair"], rater=1)
        other = load_scan(scan, modalities=["flair"], rater=2)
        assert again is first and other is not first
        assert (memo.hits, memo.misses) == (1, 2)
        np.testing.assert_array_equal(first.image, outside.image)
        with pytest.raises(ValueError, match="read-only"):
            first.image[0, 0, 0, 0] = 1.0
    assert active_memo() is None and memo.nbytes == 0


def test_memo_forgets_the_least_recently_used_beyond_its_bound():
    memo = Memo(max_bytes=3 * 800)
    for k in range(4):
        memo.get_or_make(str(k), lambda: np.zeros(100))  # 800 bytes each
    assert memo.nbytes == 3 * 800
    calls = []
    memo.get_or_make("0", lambda: calls.append(0) or np.zeros(100))
    assert calls == [0]  # "0" was dropped first
    big = memo.get_or_make("big", lambda: np.zeros(1000))  # larger than the bound: not kept
    assert big.shape == (1000,) and "big" not in memo._entries


def test_jit_compile_setting_is_validated():
    assert TrainingSettings().keras_jit_compile == "auto"
    assert TrainingSettings(jit_compile="on").keras_jit_compile is True
    assert TrainingSettings(jit_compile="off").keras_jit_compile is False
    with pytest.raises(ConfigError, match="--jit-compile"):
        TrainingSettings(jit_compile="yes")


def test_full_batch_pads_with_zero_slices():
    from mssoft.nn.inference import full_batch

    batch = np.ones((3, 4, 4, 1), np.float32)
    padded = full_batch(batch, 5)
    assert padded.shape == (5, 4, 4, 1) and not padded[3:].any() and padded[:3].all()
    assert full_batch(batch, 3) is batch


class _FixedShapeModel:
    """Records the batch shapes it sees; probability = sigmoid of the first channel."""

    jit_compile = True

    def __init__(self):
        self.shapes = set()

    def predict_on_batch(self, batch):
        self.shapes.add(batch.shape)
        return 1 / (1 + np.exp(-batch[..., :1]))


def test_xla_or_not_a_model_sees_one_batch_shape_and_the_same_probabilities():
    """Keras traces a predict step per input shape: the last batch of a scan is padded too."""
    from mssoft.nn.inference import predict_volume

    image = np.random.default_rng(0).normal(size=(20, 24, 11, 1)).astype(np.float32)
    model = _FixedShapeModel()
    fixed = predict_volume(model, image, batch_size=4, multiple=8)
    assert model.shapes == {(4, 24, 24, 1)}  # 11 slices in 3 batches
    model.jit_compile = False
    free = predict_volume(model, image, batch_size=4, multiple=8)
    assert model.shapes == {(4, 24, 24, 1)}
    np.testing.assert_array_equal(fixed, free)


def _config(data, out, **training):
    from mssoft.experiments.cv.run import CVConfig

    return CVConfig(
        data=data,
        out=out,
        ratios=(1.0,),  # the binary point alone: no point is added to the grid
        gammas=(0.3,),
        repeats=2,
        training=TrainingSettings(
            modalities=("flair",), epochs=1, base_filters=4, depth=2, batch_size=4, **training
        ),
    )


@pytest.mark.slow
def test_reused_cells_give_the_reference_predictions_and_resume(tmp_path, data, caplog):
    from mssoft.experiments.cv.run import _plan, _prepare_out, run_cells, run_cv

    results = {}
    for reuse in (True, False):
        config = _config(data, tmp_path / f"reuse{reuse}")
        plan = _plan(config)
        _prepare_out(config, plan[1])
        cells = [c for c in plan[3] if c.fold.held_out == "training01"]  # two repeats, one fold
        caplog.clear()
        with caplog.at_level("INFO", logger="mssoft.nn.model_reuse"):
            assert run_cells(config, plan=(*plan[:3], cells), reuse=reuse) == 2
        # with reuse the second cell trains the compiled model of the first (mssoft.nn.model_reuse)
        kept = [r for r in caplog.records if r.name == "mssoft.nn.model_reuse"]
        assert len(kept) == (1 if reuse else 0)
        results[reuse] = config.out
    for path in sorted(results[True].glob("cells/*/*/*/pred/*_prob.nii.gz")):
        reused, _ = read_volume(path, dtype=np.float32)
        reference, _ = read_volume(results[False] / path.relative_to(results[True]))
        assert np.abs(reused - reference).max() <= PROB_TOLERANCE, path
    for path in sorted(results[True].glob("cells/*/*/*/result.json")):
        a, b = json.loads(path.read_text()), json.loads(
            (results[False] / path.relative_to(results[True])).read_text()
        )
        assert a["threshold"] == b["threshold"] and a["best_epoch"] == b["best_epoch"]

    # a sweep folder written before --jit-compile existed resumes: same cells, none redone
    out = results[True]
    stored = json.loads((out / "config.json").read_text())
    del stored["config"]["jit_compile"]
    (out / "config.json").write_text(json.dumps(stored))
    finished = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*/*/result.json")}
    resumed = run_cv(_config(data, out))
    assert resumed.cells_done == resumed.cells_total == 4 and resumed.cells_run == 2
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    with pytest.raises(ConfigError, match="jit_compile"):
        run_cv(_config(data, out, jit_compile="on"))


@pytest.mark.slow
def test_repeats_share_one_on_disk_slice_cache_per_fold_and_mask_setting(tmp_path, data):
    from mssoft.experiments.cv.run import _plan, _prepare_out, run_cells

    config = _config(data, tmp_path / "cv", slice_cache="disk")
    plan = _plan(config)
    _prepare_out(config, plan[1])
    cells = [c for c in plan[3] if c.fold.held_out == "training01"]
    assert run_cells(config, plan=(*plan[:3], cells[:1])) == 1
    shared = config.out / "slice_cache" / "training01" / "binary"
    records = sorted(shared.glob("*.json"))
    assert len(records) == 2  # the fold's two training scans
    stamps = {p: p.stat().st_mtime_ns for p in records}
    assert run_cells(config, plan=(*plan[:3], cells)) == 1  # the second repeat
    assert {p: p.stat().st_mtime_ns for p in records} == stamps  # read, not rebuilt
    assert not list(config.out.glob("cells/*/*/*/run/slice_cache"))


def test_cpu_jobs_get_their_share_of_the_cores_only_when_it_is_several_threads():
    from mssoft.experiments.cv.run import job_threads

    assert job_threads(2, gpus=0, cores=2) is None  # 1 thread each measured slower
    assert job_threads(4, gpus=0, cores=32) == 8
    assert job_threads(3, gpus=0, cores=8) == 2
    assert job_threads(2, gpus=2, cores=32) is None  # a GPU each
