"""Pure NumPy/SciPy/scikit-image functions: soft masks, lesions, post-processing, metrics,
the threshold search, intensities and slices. Nothing here reads files or imports TensorFlow."""
