"""--normalise: percentile clipping, Nyul-Udupa histogram standardisation, its file in the run."""

import json

import numpy as np
import pytest

from mssoft.arrays.intensity import (
    LANDMARK_PERCENTILES,
    STANDARD_SCALE,
    Normaliser,
    histogram_standardise,
    learn_landmarks,
    scan_landmarks,
)
from mssoft.errors import ConfigError, DataError
from mssoft.files.layout import LANDMARKS_NAME
from mssoft.files.normalisation import (
    normalise_record,
    read_landmarks,
    run_normaliser,
    write_landmarks,
)
from mssoft.workflows.settings import TrainingSettings


def scan(seed, scale=1.0, shift=0.0, gamma=1.0):
    """A (12, 12, 8, 2) 'scan': skewed brain intensities, a zero background border."""
    rng = np.random.default_rng(seed)
    image = rng.gamma(3.0, 100.0, size=(12, 12, 8, 2)) + 50.0
    image = shift + scale * (image / image.max()) ** gamma * 1000.0
    image[:2] = 0.0
    return image.astype(np.float32)


def brain_percentiles(image):
    return np.stack([np.percentile(image[2:, ..., c], LANDMARK_PERCENTILES) for c in range(2)])


def test_histogram_maps_the_training_landmarks_to_the_standard_scale():
    training = [scan(0), scan(1, scale=3.0, shift=200.0), scan(2, gamma=1.4)]
    standard = learn_landmarks([scan_landmarks(s) for s in training])
    assert standard.shape == (2, len(LANDMARK_PERCENTILES))
    np.testing.assert_allclose(standard[:, 0], STANDARD_SCALE[0])
    np.testing.assert_allclose(standard[:, -1], STANDARD_SCALE[1])
    assert np.all(np.diff(standard, axis=1) > 0)
    for image in training:
        out = histogram_standardise(image, standard)
        # each scan's own landmarks land on the standard landmarks
        np.testing.assert_allclose(brain_percentiles(out), standard, atol=1e-3)
        assert np.all(out[:2] == 0)


def test_histogram_removes_a_linear_change_of_intensity_units():
    standard = learn_landmarks([scan_landmarks(scan(s)) for s in range(3)])
    base = histogram_standardise(scan(5), standard)
    other_scanner = histogram_standardise(scan(5, scale=2.5, shift=300.0), standard)
    np.testing.assert_allclose(other_scanner, base, atol=1e-4)


def test_histogram_of_a_single_training_scan_is_its_rescaled_landmarks():
    image = scan(3)
    own = scan_landmarks(image)
    standard = learn_landmarks([own])
    low, high = STANDARD_SCALE
    expected = low + (own - own[:, :1]) / (own[:, -1:] - own[:, :1]) * (high - low)
    np.testing.assert_allclose(standard, expected)


def test_percentile_clips_outliers_before_z_scoring():
    image = scan(0)
    image[5, 5, 4, 0] = 1e6  # one artefact voxel
    plain = Normaliser("zscore").apply(image)[..., 0]
    clipped = Normaliser("percentile").apply(image)[..., 0]
    assert plain.max() > 20  # the artefact dominates the plain z-score ...
    assert clipped.max() < 4  # ... not the clipped one
    inside = image[..., 0] != 0
    assert abs(clipped[inside].mean()) < 1e-4 and abs(clipped[inside].std() - 1) < 1e-3
    assert np.all(clipped[~inside] == 0)


def test_normaliser_checks_its_arguments():
    with pytest.raises(ValueError, match="--normalise"):
        Normaliser("minmax")
    with pytest.raises(ValueError, match="needs landmarks"):
        Normaliser("histogram")
    with pytest.raises(ValueError, match="increasing"):
        Normaliser("histogram", np.arange(len(LANDMARK_PERCENTILES), dtype=float)[None, ::-1])
    with pytest.raises(ConfigError, match="--normalise"):
        TrainingSettings(normalise="minmax")
    with pytest.raises(ConfigError, match="--augment"):
        TrainingSettings(augment="heavy")
    assert TrainingSettings().normalise == "zscore" and TrainingSettings().augment == "paper"


def test_landmarks_are_stored_in_the_run_and_reloaded(tmp_path):
    standard = learn_landmarks([scan_landmarks(scan(s)) for s in range(2)])
    path = write_landmarks(tmp_path, ["flair", "t2"], standard)
    assert path == tmp_path / LANDMARKS_NAME
    stored = json.loads(path.read_text())
    assert stored["percentiles"] == list(LANDMARK_PERCENTILES)
    np.testing.assert_allclose(read_landmarks(path, ["flair", "t2"]), standard)
    np.testing.assert_allclose(read_landmarks(path, ["t2", "flair"]), standard[::-1])

    config = {"normalise": normalise_record(Normaliser("histogram", standard))}
    assert config["normalise"]["landmarks_file"] == LANDMARKS_NAME
    normaliser = run_normaliser(tmp_path, config, ["flair", "t2"])
    image = scan(7)
    np.testing.assert_array_equal(normaliser.apply(image), histogram_standardise(image, standard))

    assert run_normaliser(tmp_path, {}, ["flair"]).method == "zscore"  # runs before the option
    assert run_normaliser(tmp_path, {"normalise": {"method": "percentile"}}, ["flair"]).method == (
        "percentile"
    )
    with pytest.raises(DataError, match="t1"):
        run_normaliser(tmp_path, config, ["flair", "t1"])
    path.unlink()
    with pytest.raises(DataError, match=LANDMARKS_NAME):
        run_normaliser(tmp_path, config, ["flair", "t2"])


def test_prediction_feeds_the_model_the_runs_normalisation():
    from mssoft.arrays.slices import to_axial_slices
    from mssoft.nn.inference import predict_volume

    class Recorder:
        def __init__(self):
            self.seen = []

        def predict_on_batch(self, batch):
            self.seen.append(np.array(batch))
            return np.zeros(batch.shape[:3] + (1,), np.float32)

    image = scan(4)
    standard = learn_landmarks([scan_landmarks(scan(s)) for s in range(3)])
    for normaliser in (Normaliser(), Normaliser("percentile"), Normaliser("histogram", standard)):
        model = Recorder()
        predict_volume(model, image, batch_size=3, normaliser=normaliser)
        expected = to_axial_slices(normaliser.apply(image))
        with_brain = expected[expected.reshape(len(expected), -1).any(axis=1)]
        seen = np.concatenate(model.seen)  # the slices with brain first, in order
        np.testing.assert_array_equal(seen[: len(with_brain)], with_brain)
