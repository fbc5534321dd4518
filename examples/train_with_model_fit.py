"""
Title: Training the soft-label U-Net with plain `model.fit`
Author: mssoft developers
Date created: 2026/11/29
Last modified: 2026/11/29
Description: Build the tf.data pipeline of lesion slices and soft masks with `mssoft.make_dataset`,
the U-Net with `mssoft.build_unet`, and train it with `SoftDiceLoss` through Keras's own `model.fit`.

Run it with `python examples/train_with_model_fit.py [--data DATA] [--epochs N] [--ratio R]`.
Without `--data` it trains on a small generated dataset (`mssoft.synthetic`) in well under a
minute on two CPU cores. `mssoft fit` does the same with a run folder, checkpoints and resuming;
this script shows the pieces.
"""

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mssoft import (
    BinarisedDice,
    MaskConfig,
    SoftDiceLoss,
    build_unet,
    discover_scans,
    input_multiple,
    load_slices,
    make_dataset,
    pad_slices,
    resolve_mask_source,
    resolve_modalities,
    split_slices,
    training_scans,
)
from mssoft.synthetic import write_isbi_dataset

"""
## Setup

A real data root can be given with `--data`; `--ratio 1` trains on the binary rater masks
(the paper's baseline).
"""

parser = argparse.ArgumentParser(description=__doc__.split("\n")[1].removeprefix("Title: "))
parser.add_argument("--data", type=Path, help="ISBI 2015 folder or CSV manifest")
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--ratio", type=float, default=1.2, help="soft-mask ratio (1 = binary)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, TensorFlow {tf.__version__}")
keras.utils.set_random_seed(args.seed)

"""
## Data

Without `--data`, two synthetic patients with two time points each are written in the ISBI 2015
layout (FLAIR, T1, T2, PD and two rater masks per scan) to a temporary folder.
"""

workdir = tempfile.TemporaryDirectory()
data = args.data
if data is None:
    data = Path(workdir.name) / "isbi"
    write_isbi_dataset(data, n_patients=2, timepoints=2, shape=(64, 64, 32), seed=args.seed)

"""
The soft mask of each scan is built on the fly from rater 1's mask: grown to `ratio` times the
lesion volume, the ring gets the label 0.3 (design of Kats et al., ISBI 2019). Slices without a
rater-1 lesion are dropped; the remaining ones are split 80/20 into training and validation.
"""

source = resolve_mask_source(mask_config=MaskConfig(rater=1, ratio=args.ratio, gamma=0.3))
scans = training_scans(discover_scans(data), rater=source.rater)
modalities = resolve_modalities(scans)
slices = load_slices(scans, modalities=modalities, source=source)
split = split_slices(slices, val_fraction=0.2, seed=args.seed)
print(
    f"{len(scans)} scans, channels {modalities}, {len(split.train)} training and "
    f"{len(split.val)} validation slices of {slices.slice_shape}"
)

"""
`make_dataset` shuffles, batches, gathers the slices from memory and rotates each training slice
by a random angle in [-5, 5] degrees, image and soft mask together (bilinear for the image,
nearest neighbour for the mask, so its values stay {0, gamma, 1}).
The U-Net of depth 3 needs slice sides that are multiples of `2 ** 3 = 8`: `multiple` zero-pads
each batch at the end of both axes (0 is the background of z-scored images and of masks).
"""

DEPTH = 3
multiple = input_multiple(DEPTH)
train_ds = make_dataset(
    slices, split.train, batch_size=8, training=True, seed=args.seed, multiple=multiple
)
val_ds = make_dataset(slices, split.val, batch_size=8, training=False, multiple=multiple)
images, targets = next(iter(train_ds))
print(
    "one batch:",
    tuple(images.shape),
    tuple(targets.shape),
    "soft values:",
    np.unique(np.round(targets.numpy(), 2))[:6],
    "...",
)

"""
## Model

The U-Net is built from Keras's own layers only, so its `.keras` file loads anywhere; it takes
slices whose sides are multiples of `2 ** depth` (padded outside the model). `SoftDiceLoss`
returns one value per slice, so the same code trains under
`tf.distribute.MirroredStrategy`; `BinarisedDice` follows the Dice of the thresholded output.
"""

model = build_unet((None, None, len(modalities)), base_filters=8, depth=DEPTH)
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate=1e-3),
    loss=SoftDiceLoss(),
    metrics=[BinarisedDice()],
)
print(f"U-Net with {model.count_params():,} parameters")

"""
## Training

Repeat the training pipeline and give `steps_per_epoch` one pass over it, as `mssoft fit` does:
over a finite dataset Keras builds new iterators every epoch, which costs time at every epoch
start (on a 2-core CPU the median epoch took 31 % longer: benchmarks/epoch_iterators.py). The
repeated pipeline reshuffles and draws new angles every pass, exactly as new iterations would.
"""

history = model.fit(
    train_ds.repeat(),
    steps_per_epoch=-(-len(split.train) // 8),
    validation_data=val_ds,
    epochs=args.epochs,
    shuffle=False,
    verbose=2,
)

"""
## Prediction

The output is a lesion probability per pixel. Saved as `.keras`, the model reloads in any
process with `keras.saving.load_model(path, compile=False)`, without mssoft; with its loss and
metric too once `mssoft.nn.losses` is imported (as here, through `mssoft.SoftDiceLoss`). Pad the
slices to the multiple and crop the probabilities back.
"""

path = Path(workdir.name) / "model.keras"
model.save(path)
reloaded = keras.saving.load_model(path)
val_images, val_targets = slices.gather(split.val)
height, width = val_images.shape[1:3]
probabilities = reloaded.predict(pad_slices(val_images, multiple), verbose=0)[:, :height, :width]
prediction, truth = probabilities >= 0.5, val_targets >= 0.5
dice = 2 * np.sum(prediction & truth) / max(np.sum(prediction) + np.sum(truth), 1)
print(f"validation loss {history.history['val_loss'][-1]:.3f}, Dice at 0.5: {dice:.3f}")
workdir.cleanup()
