"""Layers of models saved by mssoft 0.x before the U-Net became built-in layers only.

Earlier U-Nets padded their input inside the model (``mssoft>PadToMultiple``) and cropped the
output back (``mssoft>CropToReference``). :func:`mssoft.build_unet` no longer uses them; they stay
registered here so that run folders trained by those versions still load with
:func:`mssoft.nn.model_files.load_run_model` (which imports this module).

Importing this module imports Keras (and TensorFlow); ``import mssoft`` does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

__all__ = ["PadToMultiple", "CropToReference"]


@keras.saving.register_keras_serializable(package="mssoft")
class PadToMultiple(keras.layers.Layer):
    """Zero-pad the spatial axes of ``(batch, H, W, C)`` at their end to multiples of ``multiple``.

    The U-Net halves the slice ``depth`` times, so its input sides must be multiples of
    ``2 ** depth``; padding inside the model lets a saved model segment slices of any size. Zero is
    the background of z-scored images (voxels outside the brain are 0).

    Parameters
    ----------
    multiple : int
        Target multiple, >= 1.
    """

    def __init__(self, multiple: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, inputs: Any) -> Any:
        shape = ops.shape(inputs)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return ops.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape: Sequence[int | None]) -> tuple[int | None, ...]:
        def padded(size: int | None) -> int | None:
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2]), input_shape[3])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="mssoft")
class CropToReference(keras.layers.Layer):
    """Crop ``(batch, H', W', C)`` to the spatial size ``(H, W)`` of a reference tensor (top-left).

    The inverse of :class:`PadToMultiple`: called as ``CropToReference()(features, reference)``.
    """

    def call(self, inputs: Any, reference: Any) -> Any:
        shape = ops.shape(reference)
        return inputs[:, : shape[1], : shape[2], :]

    def compute_output_shape(
        self, inputs_shape: Sequence[int | None], reference_shape: Sequence[int | None]
    ) -> tuple[int | None, ...]:
        return (inputs_shape[0], reference_shape[1], reference_shape[2], inputs_shape[3])
