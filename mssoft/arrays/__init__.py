"""Pure NumPy/SciPy/scikit-image functions (and OpenCV for the rotation of training slices): soft
masks, lesions, post-processing, metrics, the threshold search, intensities, slices and their
rotation. Nothing here reads files or imports TensorFlow."""
